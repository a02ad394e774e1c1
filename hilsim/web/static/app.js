// hilsim demo page. Plain JavaScript, no framework, no build step, nothing loaded from elsewhere.
// One WebSocket to the charge point: a "hello" with the whole state when it opens, then an
// "update" whenever something changed (the state, with the events and OCPP frames since the last
// one) and once a second for the charts, and an "answer" to each thing this page asked.
// Everything shown comes through textContent: no text from the charger is ever parsed as HTML.
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);

  const page = {
    ws: null,
    retryMs: 500,
    buttons: false,
    unlocked: false,
    password: null, // kept in this tab's memory only, to unlock again after a reconnect
    idTags: [],
    faultCodes: {},
    chartS: 300,
    framesKept: 500,
    offsetS: 0, // server clock minus this browser's clock
    csms: null,
    estop: { engaged: false, web: false, panel: false },
    connectors: new Map(), // id -> latest view
    cards: new Map(), // id -> card element
    history: new Map(), // id -> [[t, W], ...]
    actions: new Set(),
    pending: new Map(), // request id -> {resolve, timer}
    nextId: 1,
    noticeTimer: null,
  };

  // -- formatting -----------------------------------------------------------------------------

  const serverNow = () => Date.now() / 1000 + page.offsetS;
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  function clock(t) {
    const d = new Date(t * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function clockMs(t) {
    return `${clock(t)}.${pad(Math.floor((t % 1) * 1000), 3)}`;
  }
  function ago(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 90) return `${s} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    return `${(s / 3600).toFixed(1)} h ago`;
  }
  const kw = (watts, digits = 2) => (watts === null || watts === undefined ? "–" : (watts / 1000).toFixed(digits));
  const parseIso = (text) => (text ? Date.parse(text) / 1000 : null);

  function notice(text, ok = false) {
    const el = $("#notice");
    el.textContent = text;
    el.classList.toggle("ok", ok);
    el.hidden = false;
    clearTimeout(page.noticeTimer);
    page.noticeTimer = setTimeout(() => { el.hidden = true; }, ok ? 3000 : 8000);
  }

  // -- the WebSocket --------------------------------------------------------------------------

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    page.ws = ws;
    ws.addEventListener("open", () => { page.retryMs = 500; });
    ws.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      receive(message);
    });
    ws.addEventListener("close", () => {
      if (page.ws !== ws) return;
      page.ws = null;
      page.unlocked = false;
      for (const [, p] of page.pending) { clearTimeout(p.timer); p.resolve({ ok: false, error: "connection lost" }); }
      page.pending.clear();
      showLink(null);
      document.body.dataset.online = "false";
      setTimeout(connect, page.retryMs);
      page.retryMs = Math.min(page.retryMs * 2, 5000);
    });
  }

  function ask(type, fields = {}) {
    return new Promise((resolve) => {
      const ws = page.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        resolve({ ok: false, error: "not connected to the charge point" });
        return;
      }
      const id = page.nextId++;
      const timer = setTimeout(() => {
        page.pending.delete(id);
        resolve({ ok: false, error: "no answer from the charge point" });
      }, 10000);
      page.pending.set(id, { resolve, timer });
      ws.send(JSON.stringify({ type, id, ...fields }));
    });
  }

  function receive(message) {
    switch (message.type) {
      case "hello": hello(message); break;
      case "update": update(message); break;
      case "answer": {
        const p = page.pending.get(message.id);
        if (p) { clearTimeout(p.timer); page.pending.delete(message.id); p.resolve(message); }
        break;
      }
      default: break;
    }
  }

  // -- the whole state, when the socket opens -------------------------------------------------

  function hello(message) {
    document.body.dataset.online = "true";
    const identity = message.identity || {};
    $("#cp-id").textContent = identity.id || "charge point";
    document.title = `${identity.id || "hilsim"} · hilsim`;
    const facts = $("#identity");
    facts.replaceChildren();
    const names = {
      id: "Identity", vendor: "Vendor", model: "Model", firmware_version: "Firmware",
      serial_number: "Serial number", charge_box_serial_number: "Charge box serial",
      meter_serial_number: "Meter serial", meter_type: "Meter type",
    };
    for (const [key, label] of Object.entries(names)) {
      if (identity[key] === null || identity[key] === undefined) continue;
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = identity[key];
      facts.append(dt, dd);
    }
    const controls = message.controls || {};
    page.buttons = Boolean(controls.buttons);
    page.idTags = controls.id_tags || [];
    page.faultCodes = controls.fault_codes || {};
    page.chartS = message.chart_s || 300;
    page.framesKept = message.frames_kept || 500;
    $("#controls").hidden = !page.buttons;
    $("#read-only").hidden = page.buttons;

    $("#connectors").replaceChildren();
    page.cards.clear();
    page.connectors.clear();
    page.history.clear();
    for (const [cid, points] of Object.entries(message.history || {})) page.history.set(Number(cid), points);
    const select = $("#filter-connector");
    for (const option of [...select.options]) if (option.value !== "" && option.value !== "none") option.remove();
    for (const view of message.update.connectors) {
      const option = document.createElement("option");
      option.value = String(view.id);
      option.textContent = String(view.id);
      select.append(option);
    }
    $("#frames").replaceChildren();
    page.actions.clear();
    const filter = $("#filter-action");
    for (const option of [...filter.options]) if (option.value !== "") option.remove();
    for (const entry of message.frames || []) addFrame(entry);
    trimFrames();
    countFrames();
    update(message.update);
    setLocked(true);
    if (page.buttons && page.password) unlock(page.password, true);
  }

  // -- connectors -----------------------------------------------------------------------------

  function update(message) {
    if (typeof message.now === "number") page.offsetS = message.now - Date.now() / 1000;
    page.csms = message.csms;
    showLink(message.csms);
    showEstop(message.emergency_stop);
    for (const view of message.connectors || []) {
      page.connectors.set(view.id, view);
      renderCard(view);
    }
    for (const [cid, sample] of Object.entries(message.samples || {})) {
      const points = page.history.get(Number(cid)) || [];
      points.push(sample);
      const oldest = serverNow() - page.chartS - 60;
      while (points.length && points[0][0] < oldest) points.shift();
      page.history.set(Number(cid), points);
    }
    for (const [cid, card] of page.cards) drawChart(card, cid);
    for (const event of message.events || []) showEvent(event);
    if (message.frames && message.frames.length) {
      for (const entry of message.frames) addFrame(entry);
      trimFrames();
      countFrames();
    }
  }

  function card(view) {
    let el = page.cards.get(view.id);
    if (el) return el;
    el = $("#connector-card").content.firstElementChild.cloneNode(true);
    el.dataset.connector = String(view.id);
    $(".name", el).textContent = `Connector ${view.id}`;
    $(".power-chart", el).setAttribute("aria-label", `Power of connector ${view.id} over the last minutes`);
    $(".buttons", el).hidden = !page.buttons;
    const list = $(".tag-list", el);
    for (const tag of page.idTags) {
      const option = document.createElement("option");
      option.value = tag;
      option.textContent = tag;
      list.append(option);
    }
    list.hidden = page.idTags.length === 0;
    $(".plug", el).addEventListener("click", (e) => press(view.id, e.currentTarget.dataset.cmd));
    $(".fault", el).addEventListener("click", (e) => press(view.id, e.currentTarget.dataset.cmd));
    $(".tag", el).addEventListener("submit", (e) => {
      e.preventDefault();
      const typed = $(".tag-typed", el).value.trim();
      const idTag = typed || list.value;
      if (!idTag) { notice("Choose or type an idTag first."); return; }
      press(view.id, "tag", { id_tag: idTag });
    });
    page.cards.set(view.id, el);
    const cards = [...page.cards.entries()].sort((a, b) => a[0] - b[0]).map(([, c]) => c);
    $("#connectors").replaceChildren(...cards);
    return el;
  }

  function renderCard(view) {
    const el = card(view);
    el.dataset.status = view.status;
    el.dataset.colour = view.led.colour;
    const led = $(".led", el);
    led.dataset.pattern = view.led.pattern;
    led.title = `LED: ${view.led.colour} ${view.led.pattern}`;
    $(".status", el).textContent = view.status;
    let error = "";
    if (view.error_code && view.error_code !== "NoError") error = view.error_code;
    else if (view.meter && view.meter.problem) error = `meter: ${view.meter.problem}`;
    $(".error", el).textContent = error;
    $(".energy", el).textContent = kw(view.energy_Wh, 3);
    $(".power", el).textContent = kw(view.power_W);
    const limit = $(".limit", el);
    if (view.limit_W === null || view.limit_W === undefined) {
      const max = document.createElement("small");
      max.textContent = ` max ${kw(view.max_power_W, 1)} kW`;
      limit.replaceChildren("none", max);
    } else {
      limit.textContent = `${kw(view.limit_W)} kW`;
    }
    let tx = "–";
    if (view.transaction_id !== null && view.transaction_id !== undefined) tx = String(view.transaction_id);
    else if (view.id_tag) tx = "not yet confirmed";
    $(".transaction", el).textContent = tx;
    $(".id-tag", el).textContent = view.id_tag || "–";
    $(".soc", el).textContent = view.soc === null || view.soc === undefined ? "–" : `${view.soc.toFixed(1)} %`;
    const plug = $(".plug", el);
    plug.dataset.cmd = view.plugged ? "unplug" : "plug";
    plug.textContent = view.plugged ? "Unplug" : "Plug in";
    const fault = $(".fault", el);
    const faulted = view.error_code && view.error_code !== "NoError";
    fault.dataset.cmd = faulted ? "clear" : "fault";
    fault.textContent = faulted ? "Clear fault" : "Fault";
    fault.title = faulted ? "" : `raises ${page.faultCodes[view.id] || "OtherError"}, as the panel's fault button does`;
  }

  function showEvent(message) {
    const el = page.cards.get(message.connector);
    if (!el) return;
    const detail = message.detail || {};
    const bits = [clock(message.at), message.event];
    if (detail.id_tag) bits.push(detail.id_tag);
    if (detail.error_code) bits.push(detail.error_code);
    const last = $(".last", el);
    last.textContent = message.refused ? `${bits.join(" ")} refused: ${message.refused}` : `${bits.join(" ")} → ${message.status}`;
    last.classList.toggle("refused", Boolean(message.refused));
  }

  // -- CSMS link, emergency stop --------------------------------------------------------------

  function showLink(csms) {
    const link = $("#link");
    if (!csms) {
      link.dataset.state = "offline";
      $("#link-text").textContent = "page disconnected from the charge point; reconnecting…";
      return;
    }
    link.dataset.state = csms.state || "disconnected";
    $("#link-text").textContent = csms.state === "connected"
      ? `connected to the CSMS` : `CSMS ${csms.state || "disconnected"}`;
    $("#csms-url").textContent = csms.url || "–";
    $("#csms-state").textContent = csms.state || "–";
    tickClocks();
  }

  function tickClocks() {
    const csms = page.csms;
    if (!csms || !page.ws) return;
    const since = parseIso(csms.connected_since);
    const last = parseIso(csms.last_message_at);
    $("#csms-since").textContent = since ? `${clock(since)} (${ago(serverNow() - since).replace(" ago", "")})` : "–";
    $("#csms-last").textContent = last ? `${clock(last)} (${ago(serverNow() - last)})` : "–";
  }

  function showEstop(estop) {
    page.estop = estop || { engaged: false, web: false, panel: false };
    const button = $("#estop");
    button.dataset.engaged = String(page.estop.engaged);
    button.textContent = page.estop.engaged ? "Release emergency stop" : "Emergency stop";
    const banner = $("#estop-banner");
    banner.hidden = !page.estop.engaged;
    const where = [page.estop.web && "from a web page", page.estop.panel && "at the panel"].filter(Boolean);
    banner.textContent = `EMERGENCY STOP engaged ${where.join(" and ")}: every connector is held Faulted.`;
  }

  // -- buttons --------------------------------------------------------------------------------

  function setLocked(locked) {
    page.unlocked = !locked;
    document.body.classList.toggle("locked", locked);
    $("#unlock").hidden = !locked;
    $("#lock-button").hidden = locked;
  }

  async function unlock(password, quiet = false) {
    const answer = await ask("unlock", { password });
    if (answer.ok) {
      page.password = password;
      setLocked(false);
      $("#password").value = "";
      if (!quiet) notice("Buttons unlocked.", true);
    } else {
      page.password = null;
      setLocked(true);
      notice(`Not unlocked: ${answer.error}`);
    }
  }

  async function press(connector, cmd, extra = {}) {
    const answer = await ask("command", { cmd, connector, ...extra });
    if (!answer.ok) {
      notice(`Connector ${connector}: ${cmd} refused: ${answer.error}`);
      const el = page.cards.get(connector);
      if (el) {
        const last = $(".last", el);
        last.textContent = `${clock(serverNow())} ${cmd} refused: ${answer.error}`;
        last.classList.add("refused");
      }
    } else if (cmd === "tag") {
      const el = page.cards.get(connector);
      if (el) $(".tag-typed", el).value = "";
    }
  }

  $("#unlock").addEventListener("submit", (e) => {
    e.preventDefault();
    unlock($("#password").value);
  });
  $("#lock-button").addEventListener("click", async () => {
    page.password = null;
    await ask("lock");
    setLocked(true);
  });
  $("#estop").addEventListener("click", async () => {
    const answer = await ask("estop", { engage: !page.estop.engaged });
    if (!answer.ok) notice(`Emergency stop: ${answer.error}`);
  });

  // -- the power chart ------------------------------------------------------------------------

  function drawChart(el, cid) {
    const canvas = $(".power-chart", el);
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    const view = page.connectors.get(cid) || {};
    const now = serverNow();
    // The last chart_s seconds, or less while there is less to show (at least a minute).
    const all = (page.history.get(cid) || []).filter((p) => p[0] >= now - page.chartS - 60);
    const span = Math.min(page.chartS, Math.max(60, all.length ? now - all[0][0] : 0));
    const start = now - span;
    const points = all.filter((p) => p[0] >= start - 60);
    const shown = span < 120 ? `${Math.round(span)} s` : `${Math.round(span / 60)} minutes`;
    $("figcaption", el).textContent = `power, last ${shown}`;
    let top = Math.max(view.max_power_W || 0, view.limit_W || 0, 1000);
    for (const p of points) top = Math.max(top, p[1]);
    const padTop = 16;
    const x = (t) => ((t - start) / span) * width;
    const y = (w) => height - 2 - (w / top) * (height - padTop - 2);
    g.strokeStyle = "#33404d";
    g.lineWidth = 1;
    for (const level of [0.5, 1]) {
      g.beginPath();
      g.moveTo(0, Math.round(y(top * level)) + 0.5);
      g.lineTo(width, Math.round(y(top * level)) + 0.5);
      g.stroke();
    }
    g.fillStyle = "#9aa7b4";
    g.font = "11px system-ui, sans-serif";
    g.fillText(`${kw(top, 1)} kW`, 4, 11);
    g.fillText("now", width - 24, 11);
    if (view.limit_W !== null && view.limit_W !== undefined) {
      g.strokeStyle = "#f2a516";
      g.setLineDash([5, 4]);
      g.beginPath();
      g.moveTo(0, y(view.limit_W));
      g.lineTo(width, y(view.limit_W));
      g.stroke();
      g.setLineDash([]);
      g.fillStyle = "#f2a516";
      g.fillText(`limit ${kw(view.limit_W, 1)} kW`, width / 2 - 30, Math.max(11, y(view.limit_W) - 3));
    }
    if (!points.length) return;
    g.strokeStyle = "#5aa2ff";
    g.fillStyle = "rgba(90, 162, 255, 0.18)";
    g.lineWidth = 2;
    // A gap of more than 90 s means nobody sampled (no page open, no transaction): no line.
    let run = [];
    const runs = [];
    for (const p of points) {
      if (run.length && p[0] - run[run.length - 1][0] > 90) { runs.push(run); run = []; }
      run.push(p);
    }
    runs.push(run);
    for (const r of runs) {
      g.beginPath();
      r.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
      g.stroke();
      g.lineTo(x(r[r.length - 1][0]), y(0));
      g.lineTo(x(r[0][0]), y(0));
      g.closePath();
      g.fill();
    }
  }

  // -- the message log ------------------------------------------------------------------------

  function summary(entry) {
    if (entry.kind === "malformed") return entry.text || "";
    const frame = entry.frame;
    if (!frame) return "(long frame, open to read)";
    const body = entry.kind === "CALL" ? frame[3] : entry.kind === "CALLRESULT" ? frame[2]
      : { errorCode: frame[2], errorDescription: frame[3] };
    const text = JSON.stringify(body);
    return text.length > 200 ? `${text.slice(0, 200)}…` : text;
  }

  function addFrame(entry) {
    const li = document.createElement("li");
    li.dataset.seq = String(entry.seq);
    li.dataset.action = entry.action;
    // connectorId 0 is the charge point as a whole (OCPP 1.6), filed with frames that name none.
    li.dataset.connector = entry.connector ? String(entry.connector) : "none";
    li.dataset.dir = entry.dir;
    li.dataset.kind = entry.kind;
    const details = document.createElement("details");
    const head = document.createElement("summary");
    const cells = [
      ["time", clockMs(entry.at)],
      ["dir", entry.dir === "out" ? "→" : "←"],
      ["action", entry.name],
      ["conn", entry.connector === null || entry.connector === undefined ? "" : `C${entry.connector}`],
      ["summary", summary(entry)],
    ];
    for (const [name, text] of cells) {
      const span = document.createElement("span");
      span.className = name;
      span.textContent = text;
      head.append(span);
    }
    head.title = entry.dir === "out" ? "sent by the charge point to the CSMS" : "sent by the CSMS to the charge point";
    const pre = document.createElement("pre");
    details.append(head, pre);
    details.addEventListener("toggle", () => {
      if (details.open && !pre.textContent) {
        pre.textContent = entry.frame ? JSON.stringify(entry.frame, null, 2) : entry.text || "";
      }
    });
    li.append(details);
    $("#frames").prepend(li);
    if (!page.actions.has(entry.action) && entry.action !== "?") {
      page.actions.add(entry.action);
      const select = $("#filter-action");
      const option = document.createElement("option");
      option.value = entry.action;
      option.textContent = entry.action;
      const after = [...select.options].slice(1).find((o) => o.value.localeCompare(entry.action) > 0);
      select.insertBefore(option, after || null);
    }
    filterOne(li);
  }

  function trimFrames() {
    const list = $("#frames");
    while (list.children.length > page.framesKept) list.lastElementChild.remove();
  }

  function countFrames() {
    const list = $("#frames");
    const shown = [...list.children].filter((li) => !li.hidden).length;
    $("#log-count").textContent = shown === list.children.length
      ? `(${list.children.length})` : `(${shown} of ${list.children.length})`;
  }

  function filterOne(li) {
    const action = $("#filter-action").value;
    const connector = $("#filter-connector").value;
    li.hidden = Boolean((action && li.dataset.action !== action) || (connector && li.dataset.connector !== connector));
  }

  function filterAll() {
    for (const li of $("#frames").children) filterOne(li);
    countFrames();
  }

  $("#filter-action").addEventListener("change", filterAll);
  $("#filter-connector").addEventListener("change", filterAll);

  // -- go -------------------------------------------------------------------------------------

  setInterval(() => {
    tickClocks();
    for (const [cid, el] of page.cards) drawChart(el, cid);
  }, 1000);
  window.addEventListener("resize", () => { for (const [cid, el] of page.cards) drawChart(el, cid); });
  connect();
})();
