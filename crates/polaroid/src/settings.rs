//! Layered settings: defaults < TOML file < `POLAROID_<KEY>` environment variables.
//! (Flags, applied by the caller, override all three.) A table of settings (`[auth]`)
//! takes its keys from the file's table and from `POLAROID_<TABLE>_<KEY>`.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Builds a config from its defaults, an optional TOML file and the given environment.
pub fn load<T: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<T> {
    let mut table = toml::Table::try_from(T::default()).context("serializing defaults")?;
    if let Some(file) = file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let overrides: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        for (key, value) in overrides {
            match (table.get_mut(&key), value) {
                (None, _) => bail!(
                    "{}: unknown setting `{key}` (see docs/configuration.md)",
                    file.display()
                ),
                (Some(toml::Value::Table(defaults)), toml::Value::Table(given)) => {
                    for (inner, value) in given {
                        if !defaults.contains_key(&inner) {
                            bail!(
                                "{}: unknown setting `{key}.{inner}` (see docs/configuration.md)",
                                file.display()
                            );
                        }
                        defaults.insert(inner, value);
                    }
                }
                (Some(slot), value) => *slot = value,
            }
        }
    }
    for (name, text) in env {
        let Some(key) = name.strip_prefix("POLAROID_").map(str::to_ascii_lowercase) else {
            continue;
        };
        let Some(slot) = setting(&mut table, &key) else {
            continue;
        };
        *slot = parse_like(slot, &text)
            .with_context(|| format!("environment variable {name}={text}"))?;
    }
    T::deserialize(table).context("invalid settings")
}

/// The setting an environment key names: a top-level key, or `<table>_<key>` of a table.
fn setting<'a>(table: &'a mut toml::Table, key: &str) -> Option<&'a mut toml::Value> {
    if table.get(key).is_some_and(|value| !value.is_table()) {
        return table.get_mut(key);
    }
    let (outer, inner) = table
        .iter()
        .filter(|(_, value)| value.is_table())
        .find_map(|(name, _)| {
            let inner = key.strip_prefix(name.as_str())?.strip_prefix('_')?;
            Some((name.clone(), inner.to_owned()))
        })?;
    table.get_mut(&outer)?.as_table_mut()?.get_mut(&inner)
}

/// Reads an environment value as the type of the setting's default.
fn parse_like(default: &toml::Value, text: &str) -> anyhow::Result<toml::Value> {
    Ok(match default {
        toml::Value::Integer(_) => toml::Value::Integer(text.trim().parse()?),
        toml::Value::Float(_) => toml::Value::Float(text.trim().parse()?),
        toml::Value::Boolean(_) => toml::Value::Boolean(text.trim().parse()?),
        // Lists are comma-separated.
        toml::Value::Array(_) => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.into()))
                .collect(),
        ),
        _ => toml::Value::String(text.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use polaroid_worker::WorkerConfig;

    #[test]
    fn env_overrides_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("polaroid.toml");
        std::fs::write(
            &file,
            "bind_address = \"127.0.0.1:7000\"\ncache_bytes = 10\nredis_prefix = \"file\"\n[auth]\nanonymous_tenant = \"guests\"\ntokens_file = \"/file\"\n",
        )
        .unwrap();
        let env = [
            (
                "POLAROID_BIND_ADDRESS".to_owned(),
                "0.0.0.0:9000".to_owned(),
            ),
            ("POLAROID_DATA_ROOTS".to_owned(), "/a, /b".to_owned()),
            ("POLAROID_KEEP_WARM_MICROS".to_owned(), "0".to_owned()),
            (
                "POLAROID_AUTH_TOKENS_FILE".to_owned(),
                "/env/tokens".to_owned(),
            ),
            (
                "POLAROID_AUTH_ALLOW_UNAUTHENTICATED".to_owned(),
                "true".to_owned(),
            ),
            ("POLAROID_TLS_CERT_FILE".to_owned(), "/tls/crt".to_owned()),
            ("POLAROID_TLS_ADMIN_TLS".to_owned(), "false".to_owned()),
            // Not a setting: standalone sets it for its own workers.
            (
                "POLAROID_TLS_PINNED_SERVER_CERT_FILE".to_owned(),
                "/x".to_owned(),
            ),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let config: WorkerConfig = load(Some(&file), env).unwrap();
        assert_eq!(config.keep_warm_micros, 0);
        assert_eq!(config.bind_address.to_string(), "0.0.0.0:9000");
        assert_eq!(config.cache_bytes, 10);
        assert_eq!(config.redis_prefix, "file");
        assert_eq!(
            config.auth.anonymous_tenant, "guests",
            "a table's key from the file"
        );
        assert_eq!(
            config.auth.tokens_file,
            std::path::PathBuf::from("/env/tokens"),
            "the environment overrides the file within a table"
        );
        assert!(config.auth.allow_unauthenticated);
        assert_eq!(config.tls.cert_file, std::path::PathBuf::from("/tls/crt"));
        assert!(!config.tls.admin_tls);
        assert!(config.tls.pinned_server_cert_file.as_os_str().is_empty());
        assert_eq!(
            config.data_roots,
            vec![std::path::PathBuf::from("/a"), "/b".into()]
        );
        assert_eq!(
            config.max_result_rows,
            WorkerConfig::default().max_result_rows
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("polaroid.toml");
        std::fs::write(&file, "no_such_setting = 1\n").unwrap();
        assert!(load::<WorkerConfig>(Some(&file), []).is_err());
        std::fs::write(&file, "[auth]\nno_such_setting = 1\n").unwrap();
        let error = load::<WorkerConfig>(Some(&file), []).unwrap_err();
        assert!(
            error.to_string().contains("auth.no_such_setting"),
            "{error}"
        );
        let env = [("POLAROID_CACHE_BYTES".to_owned(), "lots".to_owned())];
        assert!(load::<WorkerConfig>(None, env).is_err());
    }
}
