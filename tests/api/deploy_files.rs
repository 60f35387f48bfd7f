//! The container files are checked against the code, since no container
//! engine runs here: every `LATCHKEY_*` variable that compose.yaml or the
//! Dockerfile sets is a setting latchkey knows and accepts (loaded through
//! the real configuration loader), every path compose mounts exists, the
//! build targets compose names exist, and the image's HEALTHCHECK is a
//! command the binary has.

use std::path::Path;

use latchkey::config::Settings;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `KEY: value` lines whose key starts with `LATCHKEY_`.
fn compose_settings(compose: &str) -> Vec<(String, String)> {
    compose
        .lines()
        .filter_map(|line| {
            let (key, value) = line.trim().split_once(':')?;
            key.starts_with("LATCHKEY_").then(|| (key.to_owned(), value.trim().trim_matches('"').to_owned()))
        })
        .collect()
}

/// `ENV A=1 B=2 \` continuation lines of the Dockerfile.
fn dockerfile_settings(dockerfile: &str) -> Vec<(String, String)> {
    dockerfile
        .split_whitespace()
        .filter_map(|word| word.split_once('='))
        .filter(|(k, _)| k.starts_with("LATCHKEY_"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Load `vars` as latchkey would, with secret files replaced by real files.
fn load(vars: &[(String, String)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    // One value per variable, as a process environment has.
    let vars: std::collections::BTreeMap<&String, &String> = vars.iter().map(|(k, v)| (k, v)).collect();
    let env: Vec<(String, String)> = vars
        .iter()
        .map(|(&k, &v)| {
            if !k.ends_with("_FILE") {
                return (k.clone(), v.clone());
            }
            let content = match k.as_str() {
                "LATCHKEY_MASTER_KEY_FILE" => crate::helpers::TEST_MASTER_KEY.to_owned(),
                "LATCHKEY_DATABASE_URL_FILE" => "postgres://latchkey_app:secret@postgres/latchkey".to_owned(),
                _ => "a secret value".to_owned(),
            };
            let file = dir.path().join(k);
            std::fs::write(&file, format!("{content}\n")).unwrap();
            (k.clone(), file.display().to_string())
        })
        .collect();
    let (_, report) = Settings::from_sources(None, &env).unwrap_or_else(|e| panic!("{e} (from {vars:?})"));
    report.warnings
}

#[test]
fn compose_and_dockerfile_only_set_settings_latchkey_accepts() {
    let compose = repo_file("compose.yaml");
    let from_compose = compose_settings(&compose);
    assert!(from_compose.iter().any(|(k, _)| k == "LATCHKEY_MIGRATE_ON_START"), "{from_compose:?}");
    // The replicas' settings (the YAML anchor) and the migration job's.
    let (migrate, replicas): (Vec<_>, Vec<_>) = from_compose
        .into_iter()
        .partition(|(k, v)| k == "LATCHKEY_DB_STATEMENT_TIMEOUT" || v.contains("owner_database_url"));
    for vars in [&replicas, &migrate] {
        let warnings = load(vars);
        assert!(warnings.iter().all(|w| !w.contains("unknown")), "{warnings:?}");
    }

    let dockerfile = repo_file("Dockerfile");
    let mut from_image = dockerfile_settings(&dockerfile);
    assert!(from_image.iter().any(|(k, _)| k == "LATCHKEY_DATA_DIR"), "{from_image:?}");
    // A wildcard listen address needs the public issuer, as compose gives it.
    from_image.push(("LATCHKEY_ISSUER".into(), "https://auth.example.com".into()));
    let warnings = load(&from_image);
    assert!(warnings.iter().all(|w| !w.contains("unknown")), "{warnings:?}");
}

#[test]
fn compose_mounts_only_files_in_the_repository_and_builds_existing_targets() {
    let compose = repo_file("compose.yaml");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut mounts = 0;
    for line in compose.lines() {
        let Some(mount) = line.trim().strip_prefix("- ./") else { continue };
        let path = mount.split(':').next().unwrap();
        assert!(root.join(path).exists(), "compose.yaml mounts ./{path}, which is not in the repository");
        mounts += 1;
    }
    assert!(mounts >= 4, "expected the roles script, its init hook and nginx's two files");

    let dockerfile = repo_file("Dockerfile");
    for line in compose.lines() {
        let Some(target) = line.trim().strip_prefix("target: ") else { continue };
        assert!(
            dockerfile.lines().any(|l| l.starts_with("FROM ") && l.ends_with(&format!(" AS {target}"))),
            "compose builds target {target}, which the Dockerfile does not define"
        );
    }
    // The image's health check and entry point are commands the binary has.
    assert!(dockerfile.contains(r#"CMD ["latchkey", "healthcheck"]"#));
    assert!(dockerfile.contains("USER 10001"), "the image runs as a non-root user");
    for command in [["healthcheck", "--help"], ["serve", "--help"], ["migrate", "--help"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey")).args(command).output().unwrap();
        assert!(out.status.success(), "latchkey {command:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
