//! BPM's tables. Only ever append to [`MIGRATIONS`]: the host remembers how
//! many have run.
//!
//! - `accounts`: the base entity's columns (owner = the account holder)
//!   plus `account_type`, `balance` (integer minor units, never negative),
//!   `currency` and `is_default` (at most one default account per user,
//!   enforced by a partial UNIQUE index). `seq` orders by creation.
//! - `transactions`: an append-only ledger. A transfer is one row, in the
//!   history of both `account_id` and `to_account_id`; `balance_after` is
//!   `account_id`'s balance after it, `to_balance_after` `to_account_id`'s.
//! - `idempotency_keys`: see [`weft_sdk::idempotency`].

pub const MIGRATIONS: &[&str] = &[
    "CREATE TABLE accounts (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        owner_user_id TEXT NOT NULL,
        owner_org_id TEXT NOT NULL,
        attributes TEXT NOT NULL DEFAULT '{}',
        metadata TEXT NOT NULL DEFAULT '{}',
        context TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT,
        account_type TEXT NOT NULL CHECK (account_type IN ('savings', 'checking')),
        balance INTEGER NOT NULL CHECK (balance >= 0),
        currency TEXT NOT NULL,
        is_default INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1))
    )",
    "CREATE UNIQUE INDEX accounts_one_default ON accounts (owner_user_id) WHERE is_default = 1",
    "CREATE INDEX accounts_owner ON accounts (owner_user_id, seq)",
    "CREATE TABLE transactions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL CHECK (type IN ('deposit', 'withdrawal', 'transfer')),
        account_id TEXT NOT NULL REFERENCES accounts (id),
        to_account_id TEXT REFERENCES accounts (id),
        amount INTEGER NOT NULL CHECK (amount > 0),
        balance_after INTEGER NOT NULL,
        to_balance_after INTEGER,
        user_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        CHECK ((type = 'transfer') = (to_account_id IS NOT NULL))
    )",
    "CREATE INDEX transactions_account ON transactions (account_id, seq)",
    "CREATE INDEX transactions_to_account ON transactions (to_account_id, seq)",
    "CREATE TABLE idempotency_keys (
        user_id TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        response_body BLOB NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (user_id, key)
    )",
    "CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)",
];
