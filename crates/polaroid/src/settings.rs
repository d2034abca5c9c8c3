//! Layered settings: defaults < TOML file < `POLAROID_<KEY>` environment variables.
//! (Flags, applied by the caller, override all three.)

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
            if !table.contains_key(&key) {
                bail!(
                    "{}: unknown setting `{key}` (see docs/configuration.md)",
                    file.display()
                );
            }
            table.insert(key, value);
        }
    }
    for (name, text) in env {
        let Some(key) = name.strip_prefix("POLAROID_").map(str::to_ascii_lowercase) else {
            continue;
        };
        let Some(default) = table.get(&key) else {
            continue;
        };
        let value = parse_like(default, &text)
            .with_context(|| format!("environment variable {name}={text}"))?;
        table.insert(key, value);
    }
    T::deserialize(table).context("invalid settings")
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
            "bind_address = \"127.0.0.1:7000\"\ncache_bytes = 10\ntenant = \"file\"\n",
        )
        .unwrap();
        let env = [
            (
                "POLAROID_BIND_ADDRESS".to_owned(),
                "0.0.0.0:9000".to_owned(),
            ),
            ("POLAROID_DATA_ROOTS".to_owned(), "/a, /b".to_owned()),
            ("POLAROID_KEEP_WARM_MICROS".to_owned(), "0".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let config: WorkerConfig = load(Some(&file), env).unwrap();
        assert_eq!(config.keep_warm_micros, 0);
        assert_eq!(config.bind_address.to_string(), "0.0.0.0:9000");
        assert_eq!(config.cache_bytes, 10);
        assert_eq!(config.tenant, "file");
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
        let env = [("POLAROID_CACHE_BYTES".to_owned(), "lots".to_owned())];
        assert!(load::<WorkerConfig>(None, env).is_err());
    }
}
