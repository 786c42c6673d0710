//! The hostnames table, in the state database beside apps and machines (its own
//! connection: hostnames change rarely and never inside a machine's transaction).

use super::Hostname;
use crate::machines::store::Database;
use rusqlite::{Connection, params};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("state database (hostnames): {0}")]
pub struct StoreError(#[from] rusqlite::Error);

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS hostnames (
        hostname TEXT PRIMARY KEY, app TEXT NOT NULL, acme_requested INTEGER NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
";

pub struct Store {
    db: Database,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            db: Database::open(path, SCHEMA)?,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.conn()
    }

    /// Writes a hostname (new or changed).
    pub fn save(&self, host: &Hostname) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO hostnames (hostname, app, acme_requested, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (hostname) DO UPDATE SET app = excluded.app,
                acme_requested = excluded.acme_requested, updated_at = excluded.updated_at",
            params![
                host.name,
                host.app,
                host.acme_requested,
                host.created_at,
                host.updated_at
            ],
        )?;
        Ok(())
    }

    pub fn delete(&self, hostname: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM hostnames WHERE hostname = ?1",
            params![hostname],
        )?;
        Ok(())
    }

    pub fn all(&self) -> Result<Vec<Hostname>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT hostname, app, acme_requested, created_at, updated_at FROM hostnames
             ORDER BY hostname",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(Hostname {
                name: row.get(0)?,
                app: row.get(1)?,
                acme_requested: row.get(2)?,
                created_at: row.get(3)?,
                updated_at: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
