use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use serde::Deserialize;

use super::paths::{Resolved, resolve_existing};
use super::{Cancel, blocking, cut, info, page_bytes, parse_args, plural};
use crate::tool::{Effect, Tool, ToolContext, ToolError, ToolInfo, ToolOutput};

const MAX_ROWS: usize = 500;
/// Longer text values are cut to this many bytes.
const MAX_CELL_BYTES: usize = 1000;
/// PRAGMAs that only describe the schema; every other PRAGMA is refused.
const READ_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "collation_list",
];

/// `sqlite_query`: one read-only SQL statement on a SQLite file under the roots.
#[derive(Debug, Clone)]
pub struct SqliteQuery {
    info: ToolInfo,
    /// Databases the user named in the configuration, openable wherever they are.
    databases: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    database: String,
    sql: String,
    #[serde(default)]
    params: Vec<serde_json::Value>,
}

impl SqliteQuery {
    /// The tool, ready to register.
    pub fn new() -> Self {
        Self::with_databases(BTreeMap::new())
    }

    /// The tool, also offering `databases` (name → absolute path) by name.
    pub fn with_databases(databases: BTreeMap<String, PathBuf>) -> Self {
        let mut info = info(
            "sqlite_query",
            "Run one read-only SQL statement (SELECT, WITH … SELECT, or a schema PRAGMA such \
             as table_info) on a SQLite database file inside the allowed directories. The \
             database is opened read-only: INSERT, UPDATE, DELETE, CREATE, DROP, ATTACH and \
             the like are refused. Bind values with `?1`, `?2`… and `params`. The answer is \
             one line `columns: [...]`, then one JSON array per row, then the row count; at \
             most 500 rows (a cut result ends with a `[…` line — add LIMIT/OFFSET or WHERE). \
             To see the tables: SELECT name, sql FROM sqlite_schema.",
            serde_json::json!({
                "type": "object",
                "properties": {
                    "database": {
                        "type": "string",
                        "description": "SQLite database file, relative to the first allowed directory or absolute, or the name of a database the user configured."
                    },
                    "sql": {
                        "type": "string",
                        "description": "A single SQL statement."
                    },
                    "params": {
                        "type": "array",
                        "items": { "type": ["string", "number", "boolean", "null"] },
                        "description": "Values for the statement's placeholders, in order."
                    }
                },
                "required": ["database", "sql"],
                "additionalProperties": false
            }),
            Effect::Read,
        );
        if !databases.is_empty() {
            let names: Vec<&str> = databases.keys().map(String::as_str).collect();
            info.spec.description.push_str(&format!(
                " Databases the user named, usable by name as `database`: {}.",
                names.join(", ")
            ));
        }
        Self { info, databases }
    }
}

impl Default for SqliteQuery {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Tool for SqliteQuery {
    fn info(&self) -> &ToolInfo {
        &self.info
    }

    async fn call(
        &self,
        args: serde_json::Value,
        cx: &ToolContext,
    ) -> Result<ToolOutput, ToolError> {
        let mut args: Args = parse_args(args)?;
        let mut cx = cx.clone();
        // A named database is opened through the same confined path as any other, with
        // its directory as the only root: PAI's own files stay refused.
        if let Some(path) = self.databases.get(args.database.trim()) {
            let name = args.database.trim().to_string();
            let missing = || {
                ToolError::Failed(format!(
                    "the database '{name}' is configured at {}, which does not exist; tell the user",
                    path.display()
                ))
            };
            let dir = path
                .parent()
                .and_then(|d| d.canonicalize().ok())
                .ok_or_else(missing)?;
            let file = path.file_name().ok_or_else(missing)?;
            cx.roots = vec![dir];
            args.database = file.to_string_lossy().into_owned();
        }
        let params = args
            .params
            .iter()
            .map(to_sql)
            .collect::<Result<Vec<_>, _>>()?;
        blocking(move |cancel| query(&cx, &args, params, cancel)).await
    }
}

fn to_sql(value: &serde_json::Value) -> Result<SqlValue, ToolError> {
    Ok(match value {
        serde_json::Value::Null => SqlValue::Null,
        serde_json::Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => SqlValue::Integer(i),
            (None, Some(f)) => SqlValue::Real(f),
            (None, None) => {
                return Err(ToolError::InvalidArguments(format!(
                    "the number {n} does not fit SQLite's types"
                )));
            }
        },
        serde_json::Value::String(s) => SqlValue::Text(s.clone()),
        other => {
            return Err(ToolError::InvalidArguments(format!(
                "params hold strings, numbers, booleans or null, not {other}"
            )));
        }
    })
}

fn query(
    cx: &ToolContext,
    args: &Args,
    params: Vec<SqlValue>,
    cancel: &Cancel,
) -> Result<ToolOutput, ToolError> {
    let db = resolve_existing(cx, &args.database)?;
    if !db.path.is_file() {
        return Err(ToolError::Failed(format!(
            "'{}' is not a file; give the path of a SQLite database file",
            db.shown
        )));
    }
    let sqlite_failed = |e: rusqlite::Error| {
        ToolError::Failed(format!(
            "SQLite could not run the query on '{}': {e}",
            db.shown
        ))
    };
    let mut conn = open_checked(&db).map_err(|e| match e {
        Opened::Io(e) => ToolError::Failed(format!("cannot open '{}': {e}", db.shown)),
        Opened::Sqlite(e) => sqlite_failed(e),
        Opened::Changed => ToolError::Failed(format!(
            "'{}' changed while it was being opened (a directory on its path was \
             replaced); try again",
            db.shown
        )),
    })?;
    conn.execute_batch("PRAGMA query_only = ON")
        .map_err(sqlite_failed)?;

    // A first prepare, before the authorizer, only to tell one statement from several:
    // with the authorizer on, a refused second statement would hide that.
    match conn.prepare(&args.sql) {
        Ok(_) => {}
        Err(rusqlite::Error::MultipleStatement) => {
            return Err(ToolError::InvalidArguments(
                "sql holds more than one statement; send one statement per call".into(),
            ));
        }
        Err(rusqlite::Error::Empty) => {
            return Err(ToolError::InvalidArguments(
                "sql is empty; give one SELECT statement".into(),
            ));
        }
        Err(e) => return Err(sqlite_failed(e)),
    }

    // The read-only open and query_only stop writes to this file; the authorizer also
    // stops ATTACH (reading other files) and anything that is not a plain read.
    let refused: Arc<Mutex<Option<String>>> = Arc::default();
    let refused_in_hook = Arc::clone(&refused);
    conn.authorizer(Some(move |cx: AuthContext<'_>| match cx.action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => {
            Authorization::Allow
        }
        AuthAction::Function { function_name }
            if !function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Authorization::Allow
        }
        AuthAction::Pragma { pragma_name, .. }
            if READ_PRAGMAS.contains(&pragma_name.to_ascii_lowercase().as_str()) =>
        {
            Authorization::Allow
        }
        action => {
            if let Ok(mut slot) = refused_in_hook.lock() {
                slot.get_or_insert_with(|| describe(&action));
            }
            Authorization::Deny
        }
    }))
    .map_err(sqlite_failed)?;
    // Just inside the registry's time cap, so the model gets the advice below rather than
    // a bare timeout; dropping the call (the registry's cap) stops the query as well.
    let time_cap = cx.timeout * 9 / 10;
    let deadline = Instant::now() + time_cap;
    let cancel_in_hook = cancel.clone();
    conn.progress_handler(
        10_000,
        Some(move || cancel_in_hook.is_set() || Instant::now() > deadline),
    )
    .map_err(sqlite_failed)?;

    let read_only_error = |what: &str| {
        ToolError::Failed(format!(
            "sqlite_query is read-only and {what} is not allowed; send a single SELECT \
             (or a schema PRAGMA such as table_info)"
        ))
    };
    let mut stmt = conn.prepare(&args.sql).map_err(|e| {
        match refused.lock().ok().and_then(|mut slot| slot.take()) {
            Some(what) => read_only_error(&what),
            None if is_auth_error(&e) => read_only_error("this statement"),
            None => sqlite_failed(e),
        }
    })?;
    if !stmt.readonly() {
        return Err(read_only_error("a statement that changes data"));
    }
    let expected = stmt.parameter_count();
    if expected != params.len() {
        return Err(ToolError::InvalidArguments(format!(
            "the statement has {} but params holds {}",
            plural(expected, "placeholder", "placeholders"),
            plural(params.len(), "value", "values")
        )));
    }
    let columns: Vec<String> = stmt.column_names().map(str::to_string).collect();
    let budget = page_bytes(cx, usize::MAX);
    let mut out = format!("columns: {}\n", serde_json::Value::from(columns.clone()));
    let interrupted = |e: rusqlite::Error| {
        if cancel.is_set() || Instant::now() > deadline {
            ToolError::Failed(format!(
                "the query ran longer than {time_cap:?} and was stopped; add a LIMIT or a narrower WHERE"
            ))
        } else {
            sqlite_failed(e)
        }
    };
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(interrupted)?;
    let mut count = 0;
    let mut stop = None;
    while let Some(row) = rows.next().map_err(interrupted)? {
        let values = (0..columns.len())
            .map(|i| row.get_ref(i).map(to_json))
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite_failed)?;
        let line = serde_json::Value::from(values).to_string();
        if count == MAX_ROWS || out.len() + line.len() + 1 > budget {
            stop = Some(format!(
                "[… stopped after {}; add LIMIT/OFFSET or a narrower WHERE to see others]",
                plural(count, "row", "rows")
            ));
            break;
        }
        out.push_str(&line);
        out.push('\n');
        count += 1;
    }
    match stop {
        Some(stop) => {
            out.push_str(&stop);
            Ok(ToolOutput {
                content: out,
                truncated: true,
            })
        }
        None => {
            out.push_str(&format!("({})", plural(count, "row", "rows")));
            Ok(ToolOutput::text(out))
        }
    }
}

enum Opened {
    Io(std::io::Error),
    Sqlite(rusqlite::Error),
    /// SQLite ended up with another file than the one checked: the path was swapped.
    Changed,
}

/// Opens the checked database read-only, making sure SQLite reads the file that was
/// checked and not one a symlink swapped in since.
fn open_checked(db: &Resolved) -> Result<Connection, Opened> {
    // No SQLITE_OPEN_URI: the name is a plain path, never `file:…?mode=rw`.
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // Held open until the check below, so its inode stays the one compared against.
        let file = db.open_file().map_err(Opened::Io)?;
        if !file.metadata().map_err(Opened::Io)?.is_file() {
            return Err(Opened::Io(std::io::Error::other(
                "it is not a regular file",
            )));
        }
        // SQLite resolves this magic link to the file's current path (it follows every
        // symlink itself, to find the journal beside the real file) and opens that path.
        // The file was opened beneath the root, so the path it names is the checked one;
        // what SQLite opened is then compared with it, which closes the gap between
        // SQLite's resolving and its open.
        let conn =
            Connection::open_with_flags(format!("/proc/self/fd/{}", file.as_raw_fd()), flags)
                .map_err(Opened::Sqlite)?;
        if !linux::opened_same_file(&conn, &file) {
            return Err(Opened::Changed);
        }
        Ok(conn)
    }
    #[cfg(not(target_os = "linux"))]
    {
        // Elsewhere the path is opened as checked; the check-to-open window remains.
        Connection::open_with_flags(&db.path, flags).map_err(Opened::Sqlite)
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    use rusqlite::Connection;

    /// SQLite holds a descriptor for the path it resolved (`conn.path()`); that descriptor
    /// must be for the same file as `ours`. Another descriptor for that file from
    /// elsewhere in this process would have to be open at the very moment the path is
    /// swapped and swapped back to fool this.
    pub(super) fn opened_same_file(conn: &Connection, ours: &File) -> bool {
        let Ok(want) = ours.metadata() else {
            return false;
        };
        let Some(opened) = conn.path().filter(|p| !p.is_empty()) else {
            return false;
        };
        let ours = ours.as_raw_fd().to_string();
        let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
            return false;
        };
        fds.filter_map(Result::ok)
            .filter(|fd| fd.file_name() != ours.as_str())
            .any(|fd| {
                let link = fd.path();
                std::fs::read_link(&link).is_ok_and(|target| target == Path::new(opened))
                    && std::fs::metadata(&link)
                        .is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino())
            })
    }
}

fn to_json(value: ValueRef<'_>) -> serde_json::Value {
    match value {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| f.to_string().into()),
        ValueRef::Text(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let shown = cut(&text, MAX_CELL_BYTES);
            if shown.len() < text.len() {
                format!("{shown}[… {} more bytes]", text.len() - shown.len()).into()
            } else {
                shown.into()
            }
        }
        ValueRef::Blob(bytes) => format!("<blob, {} bytes>", bytes.len()).into(),
    }
}

fn touches_schema_table(action: &AuthAction<'_>) -> bool {
    let table = match action {
        AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::Update { table_name, .. } => table_name,
        _ => return false,
    };
    [
        "sqlite_master",
        "sqlite_temp_master",
        "sqlite_schema",
        "sqlite_temp_schema",
    ]
    .iter()
    .any(|t| t.eq_ignore_ascii_case(table))
}

fn is_auth_error(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::AuthorizationForStatementDenied
    )
}

/// What the authorizer refused, in words the model can act on.
fn describe(action: &AuthAction<'_>) -> String {
    // DROP first deletes from the schema table, and the refusal stops it there.
    if touches_schema_table(action) {
        return "a schema change (CREATE, DROP or ALTER)".into();
    }
    match action {
        AuthAction::Insert { .. } => "INSERT".into(),
        AuthAction::Update { .. } => "UPDATE".into(),
        AuthAction::Delete { .. } => "DELETE".into(),
        AuthAction::Attach { .. } => "ATTACH".into(),
        AuthAction::Detach { .. } => "DETACH".into(),
        AuthAction::Pragma { pragma_name, .. } => format!("PRAGMA {pragma_name}"),
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
            "a transaction statement".into()
        }
        AuthAction::Function { function_name } => format!("the function {function_name}()"),
        AuthAction::DropTable { .. }
        | AuthAction::DropIndex { .. }
        | AuthAction::DropView { .. }
        | AuthAction::DropTrigger { .. }
        | AuthAction::DropTempTable { .. }
        | AuthAction::DropTempIndex { .. }
        | AuthAction::DropTempView { .. }
        | AuthAction::DropTempTrigger { .. }
        | AuthAction::DropVtable { .. } => "DROP".into(),
        AuthAction::CreateTable { .. }
        | AuthAction::CreateIndex { .. }
        | AuthAction::CreateView { .. }
        | AuthAction::CreateTrigger { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempView { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateVtable { .. } => "CREATE".into(),
        AuthAction::AlterTable { .. } => "ALTER TABLE".into(),
        _ => "this statement".into(),
    }
}
