"""The schema of hilsim's database, as the ordered scripts that build it, and how they are run.

Kept apart from the tables' code so that a released script is never edited by accident while a
query is changed: databases in the field already ran it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiosqlite

from hilsim.errors import StoreSetupError

logger = logging.getLogger(__name__)

# Schema migrations, applied in order; PRAGMA user_version records how many have run. Append new
# scripts at the end and never edit a released one, because databases in the field already ran it.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE configuration_key (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        origin TEXT NOT NULL CHECK (origin IN ('default', 'changed')),
        updated_at TEXT NOT NULL
    );
    """,
    # 2: nothing lost. A transaction is recorded before StartTransaction is sent; transaction
    # messages wait in the outbox until the CSMS confirmed them; the energy register survives.
    """
    CREATE TABLE charging_transaction (
        local_id INTEGER PRIMARY KEY AUTOINCREMENT,
        connector_id INTEGER NOT NULL,
        id_tag TEXT NOT NULL,
        transaction_id INTEGER,
        meter_start_Wh INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        last_energy_Wh REAL NOT NULL,
        last_sample_at TEXT NOT NULL,
        stopped INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        action TEXT NOT NULL
            CHECK (action IN ('StartTransaction', 'MeterValues', 'StopTransaction')),
        local_id INTEGER NOT NULL REFERENCES charging_transaction (local_id),
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE TABLE meter_register (
        connector_id INTEGER PRIMARY KEY,
        energy_Wh REAL NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE authorization_cache (
        id_tag TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        expiry_date TEXT,
        parent_id_tag TEXT,
        updated_at TEXT NOT NULL
    );
    """,
    # 3: what the CSMS sets and a real charger keeps across a reboot: the local authorization
    # list and its version (one row, id 1), each connector's availability (0 = the charge point
    # as a whole), and reservations (their expiry as the CSMS sent it).
    """
    CREATE TABLE local_auth_list (
        id_tag TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        expiry_date TEXT,
        parent_id_tag TEXT
    );
    CREATE TABLE local_auth_list_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE connector_availability (
        connector_id INTEGER PRIMARY KEY,
        operative INTEGER NOT NULL CHECK (operative IN (0, 1)),
        updated_at TEXT NOT NULL
    );
    CREATE TABLE reservation (
        reservation_id INTEGER PRIMARY KEY,
        connector_id INTEGER NOT NULL,
        id_tag TEXT NOT NULL,
        parent_id_tag TEXT,
        expiry_date TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    """,
    # 4: smart charging profiles the CSMS installed (their OCPP form as JSON), and the firmware
    # an UpdateFirmware installed, with the status still to be reported after its reboot.
    """
    CREATE TABLE charging_profile (
        profile_id INTEGER PRIMARY KEY,
        connector_id INTEGER NOT NULL,
        purpose TEXT NOT NULL,
        stack_level INTEGER NOT NULL,
        payload TEXT NOT NULL,
        installed_at TEXT NOT NULL
    );
    CREATE TABLE firmware (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version TEXT NOT NULL,
        pending_status TEXT,
        updated_at TEXT NOT NULL
    );
    """,
    # 5: StopTransaction's transactionData (StopTxnSampledData, StopTxnAlignedData), kept as it
    # is measured, so that a transaction a power cut ended still reports what it sampled.
    """
    CREATE TABLE transaction_data (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        local_id INTEGER NOT NULL REFERENCES charging_transaction (local_id),
        meter_value TEXT NOT NULL
    );
    CREATE INDEX transaction_data_of_transaction ON transaction_data (local_id, seq);
    """,
    # 6: the outbox holds what goes on the wire (the OCPP payload, camelCase, without the
    # transactionId learnt later) instead of the keyword arguments of a Python method, which an
    # upgrade that renames one could no longer call. Rows that cannot be converted, and rows
    # given up on later, are set aside in outbox_dead: kept for a person, never sent, never lost.
    """
    CREATE TABLE outbox_dead (
        seq INTEGER PRIMARY KEY,
        action TEXT NOT NULL,
        local_id INTEGER NOT NULL,
        transaction_id INTEGER,
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        set_aside_at TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    INSERT INTO outbox_dead (seq, action, local_id, transaction_id, payload, attempts,
        created_at, set_aside_at, reason)
    SELECT o.seq, o.action, o.local_id,
        (SELECT t.transaction_id FROM charging_transaction t WHERE t.local_id = o.local_id),
        o.payload, o.attempts, o.created_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'upgrade: its stored arguments do not make an OCPP payload'
    FROM outbox o
    WHERE NOT CASE WHEN json_valid(o.payload) AND json_type(o.payload) = 'object' THEN
        CASE o.action
        WHEN 'StartTransaction' THEN
            json_type(o.payload, '$.connector_id') = 'integer'
            AND json_type(o.payload, '$.id_tag') = 'text'
            AND json_type(o.payload, '$.meter_start') = 'integer'
            AND json_type(o.payload, '$.timestamp') = 'text'
            AND coalesce(json_type(o.payload, '$.reservation_id'), 'null')
                IN ('integer', 'null')
            AND NOT EXISTS (SELECT 1 FROM json_each(o.payload) WHERE key NOT IN
                ('connector_id', 'id_tag', 'meter_start', 'timestamp', 'reservation_id'))
        WHEN 'MeterValues' THEN
            json_type(o.payload, '$.connector_id') = 'integer'
            AND json_type(o.payload, '$.meter_value') = 'array'
            AND NOT EXISTS (SELECT 1 FROM json_each(o.payload) WHERE key NOT IN
                ('connector_id', 'meter_value'))
        WHEN 'StopTransaction' THEN
            json_type(o.payload, '$.meter_stop') = 'integer'
            AND json_type(o.payload, '$.timestamp') = 'text'
            AND json_type(o.payload, '$.reason') = 'text'
            AND coalesce(json_type(o.payload, '$.id_tag'), 'null') IN ('text', 'null')
            AND coalesce(json_type(o.payload, '$.transaction_data'), 'null')
                IN ('array', 'null')
            AND NOT EXISTS (SELECT 1 FROM json_each(o.payload) WHERE key NOT IN
                ('meter_stop', 'timestamp', 'reason', 'id_tag', 'transaction_data'))
        ELSE 0 END
    ELSE 0 END;
    DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox_dead);
    -- json_patch drops a member whose patch value is null: OCPP-J leaves absent fields out.
    UPDATE outbox SET payload = CASE action
        WHEN 'StartTransaction' THEN json_patch(
            json_object('connectorId', payload -> '$.connector_id',
                'idTag', payload -> '$.id_tag', 'meterStart', payload -> '$.meter_start',
                'timestamp', payload -> '$.timestamp'),
            json_object('reservationId', payload -> '$.reservation_id'))
        WHEN 'MeterValues' THEN json_object('connectorId', payload -> '$.connector_id',
            'meterValue', payload -> '$.meter_value')
        ELSE json_patch(
            json_object('meterStop', payload -> '$.meter_stop',
                'timestamp', payload -> '$.timestamp', 'reason', payload -> '$.reason'),
            json_object('idTag', payload -> '$.id_tag',
                'transactionData', payload -> '$.transaction_data'))
        END;
    """,
    # 7: OCPP 2.0.1 beside 1.6 (`[charge_point] ocpp_version`). The device model's variables as
    # the CSMS or the operator set them (one row per attribute; '' and 0 stand for an absent
    # instance, EVSE or connector, so that the key stays a plain primary key; a variable that is
    # also a 1.6 configuration key lives in configuration_key alone). A 2.0.1 transaction's id,
    # chosen by the charge point, and the seqNo its next TransactionEvent gets: both must survive
    # a power cut, or the CSMS would see a sequence start again. The outbox takes
    # TransactionEvent; SQLite cannot widen a CHECK in place, so the table is copied.
    """
    CREATE TABLE device_variable (
        component TEXT NOT NULL,
        component_instance TEXT NOT NULL DEFAULT '',
        evse_id INTEGER NOT NULL DEFAULT 0,
        connector_id INTEGER NOT NULL DEFAULT 0,
        variable TEXT NOT NULL,
        variable_instance TEXT NOT NULL DEFAULT '',
        attribute TEXT NOT NULL CHECK (attribute IN ('Actual', 'Target', 'MinSet', 'MaxSet')),
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (component, component_instance, evse_id, connector_id, variable,
            variable_instance, attribute)
    );
    ALTER TABLE charging_transaction ADD COLUMN tx_id TEXT;
    ALTER TABLE charging_transaction ADD COLUMN next_seq_no INTEGER NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX charging_transaction_tx_id ON charging_transaction (tx_id)
        WHERE tx_id IS NOT NULL;
    CREATE TABLE outbox_7 (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        action TEXT NOT NULL CHECK (action IN
            ('StartTransaction', 'MeterValues', 'StopTransaction', 'TransactionEvent')),
        local_id INTEGER NOT NULL REFERENCES charging_transaction (local_id),
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    INSERT INTO outbox_7 (seq, action, local_id, payload, attempts, created_at)
        SELECT seq, action, local_id, payload, attempts, created_at FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_7 RENAME TO outbox;
    """,
    # 8: the OCPP 2.0.1 UpdateFirmware's requestId, kept with the status still to report after
    # the restart: 2.0.1 requires it on that FirmwareStatusNotification (Installed) too.
    """
    ALTER TABLE firmware ADD COLUMN request_id INTEGER;
    """,
)


async def migrate(connection: aiosqlite.Connection, path: Path) -> None:
    """Run the scripts `connection`'s database has not run yet (PRAGMA user_version counts them).

    Each script commits with its version bump, so a power cut mid-migration leaves the previous
    version intact and the migration simply runs again.
    """
    rows = list(await connection.execute_fetchall("PRAGMA user_version"))
    version = int(rows[0][0])
    if version > len(MIGRATIONS):
        raise StoreSetupError(  # a restart would only meet it again: exit 2
            f"{path}: database schema version {version} is newer than this hilsim "
            f"supports ({len(MIGRATIONS)}); was it written by a newer release?"
        )
    for number, script in enumerate(MIGRATIONS[version:], version + 1):
        logger.info("%s: migrating schema to version %d", path, number)
        try:
            await connection.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            )
        except BaseException:
            if connection.in_transaction:
                await connection.rollback()
            raise
