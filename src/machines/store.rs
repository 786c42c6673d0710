//! Durable state in SQLite: apps, machine records (as JSON) and the pid of each running
//! machine, so a restarted edgewake can find what a crash left behind.

use super::record::MachineRecord;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;

/// An app as stored and as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppRecord {
    pub id: String,
    pub name: String,
    pub org_slug: String,
    pub created_at: String,
}

impl AppRecord {
    /// A new app, with a fresh id.
    pub fn new(name: &str, org_slug: &str) -> AppRecord {
        AppRecord {
            id: crate::ids::app_id(),
            name: name.into(),
            org_slug: org_slug.into(),
            created_at: super::record::now_rfc3339(),
        }
    }
}

/// A machine as loaded at boot.
pub struct StoredMachine {
    pub app: String,
    pub record: MachineRecord,
    pub pid: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database holds a record it cannot read: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("cannot make the state database private: {0}")]
    Private(#[source] std::io::Error),
}

/// The database holds machines' environments (their secrets): the owner's alone.
/// SQLite gives its `-wal` and `-shm` files the database's mode.
const STATE_FILE_MODE: u32 = 0o600;

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS apps (
        name TEXT PRIMARY KEY, id TEXT NOT NULL, org_slug TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS machines (
        id TEXT PRIMARY KEY, app TEXT NOT NULL, record TEXT NOT NULL, pid INTEGER);
";

/// Creates the database file readable by its owner only, or makes an existing one so
/// (an edgewake before this check made it 0644), before SQLite opens it.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(STATE_FILE_MODE)
        .open(path)?;
    let private = std::fs::Permissions::from_mode(STATE_FILE_MODE);
    std::fs::set_permissions(path, private.clone())?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::set_permissions(std::path::Path::new(&side), private.clone()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// A connection to the state database with its tables made. Writes are small and rare
/// (lifecycle changes), so one connection behind a mutex is enough for each user.
pub struct Database {
    conn: Mutex<Connection>,
}

impl Database {
    pub fn open(path: &Path, schema: &str) -> rusqlite::Result<Database> {
        let conn = Connection::open(path)?;
        conn.execute_batch(schema)?;
        Ok(Database {
            conn: Mutex::new(conn),
        })
    }

    pub fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Apps and machines in the state database.
pub struct Store {
    db: Database,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        make_private(path).map_err(StoreError::Private)?;
        Ok(Store {
            db: Database::open(path, SCHEMA)?,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.conn()
    }

    pub fn insert_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO apps (name, id, org_slug, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![app.name, app.id, app.org_slug, app.created_at],
        )?;
        Ok(())
    }

    /// Keeps an app created elsewhere, unless it is kept already.
    pub fn keep_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO apps (name, id, org_slug, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![app.name, app.id, app.org_slug, app.created_at],
        )?;
        Ok(())
    }

    pub fn delete_app(&self, name: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute("DELETE FROM machines WHERE app = ?1", params![name])?;
        conn.execute("DELETE FROM apps WHERE name = ?1", params![name])?;
        Ok(())
    }

    pub fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, name, org_slug, created_at FROM apps ORDER BY name")?;
        let rows = stmt.query_map([], |row| {
            Ok(AppRecord {
                id: row.get(0)?,
                name: row.get(1)?,
                org_slug: row.get(2)?,
                created_at: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Writes a machine's record, keeping its pid as it was.
    pub fn save_machine(&self, app: &str, record: &MachineRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(record)?;
        self.conn().execute(
            "INSERT INTO machines (id, app, record) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET record = excluded.record",
            params![record.id, app, json],
        )?;
        Ok(())
    }

    pub fn set_pid(&self, machine_id: &str, pid: Option<u32>) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE machines SET pid = ?2 WHERE id = ?1",
            params![machine_id, pid],
        )?;
        Ok(())
    }

    pub fn delete_machine(&self, machine_id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM machines WHERE id = ?1", params![machine_id])?;
        Ok(())
    }

    pub fn machines(&self) -> Result<Vec<StoredMachine>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT app, record, pid FROM machines ORDER BY id")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<u32>>(2)?,
            ))
        })?;
        let mut machines = Vec::new();
        for row in rows {
            let (app, json, pid) = row?;
            machines.push(StoredMachine {
                app,
                record: serde_json::from_str(&json)?,
                pid,
            });
        }
        Ok(machines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The database and its write-ahead log are the owner's alone, even when an older
    /// edgewake left the database readable by everyone.
    #[test]
    fn state_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edgewake.db");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(&path).unwrap();
        let app = AppRecord {
            id: "1".into(),
            name: "a".into(),
            org_slug: "personal".into(),
            created_at: "now".into(),
        };
        store.insert_app(&app).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("edgewake.db-wal")), 0o600);
    }

    /// A machine's config reads back from the database exactly as the client gave it,
    /// numbers included (found by fuzz/machine_config: a port of 444 followed by 69
    /// zeros, kept as `4.44e71`, read back as `4.440000000000001e71`, so a machine's
    /// config changed across a restart).
    #[test]
    fn config_numbers_survive_the_database() {
        use super::super::record::{ImageRef, MachineState};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("edgewake.db")).unwrap();
        let text = format!(
            r#"{{"image": "nginx", "services": [{{"ports": [{{"port": 444{}}}]}}], "x": [0.1, 1e-7, 5e-324, 1.7976931348623157e308]}}"#,
            "0".repeat(69)
        );
        let config: serde_json::Value = serde_json::from_str(&text).unwrap();
        let record = MachineRecord {
            id: "m1".into(),
            name: "web".into(),
            state: MachineState::Created,
            region: "ams".into(),
            instance_id: "i1".into(),
            private_ip: std::net::Ipv4Addr::new(127, 20, 0, 2),
            config: config.clone(),
            image_ref: ImageRef::parse("nginx"),
            created_at: "now".into(),
            updated_at: "now".into(),
            events: Vec::new(),
            cordoned: false,
            checks: Vec::new(),
        };
        store.save_machine("a", &record).unwrap();
        let stored = store.machines().unwrap();
        assert_eq!(stored[0].record.config, config);
    }
}
