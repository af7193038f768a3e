//! docs/state-machine.md is generated from the transition table; this test keeps them equal.

#[test]
fn state_machine_doc_matches_the_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/state-machine.md");
    let generated = ekey_domain::request::state_machine_doc();
    if std::env::var_os("EKEY_REGENERATE_DOCS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/state-machine.md is out of date: run EKEY_REGENERATE_DOCS=1 cargo test -p ekey-domain --test docs"
    );
}
