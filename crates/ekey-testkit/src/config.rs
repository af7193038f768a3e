//! Configuration files for tests that start `ekey serve` as production would.

use std::path::Path;

/// Writes a production TOML config at `path`: SQLite in `data`, listening on `port` of
/// 127.0.0.1, mail to an SMTP server nobody answers, software tokens explicitly allowed.
pub fn write_production_config(path: &Path, data: &Path, port: u16) {
    std::fs::write(
        path,
        format!(
            r#"database_url = "sqlite:{db}"
listen = "127.0.0.1:{port}"
data_dir = "{data}"
public_url = "http://127.0.0.1:{port}"
mail_transport = "smtp"
smtp_url = "smtp://127.0.0.1:9"
allow_software_tokens_insecure = true
"#,
            db = data.join("ekey.db").display(),
            data = data.display(),
        ),
    )
    .unwrap();
}
