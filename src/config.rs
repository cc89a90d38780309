//! The configuration files: `jobdl.toml` in the working directory and the user file
//! (`$XDG_CONFIG_HOME/jobdl/config.toml`, else `~/.config/jobdl/config.toml`). This module owns
//! the table of settings ([`KEYS`]), finding and reading the files, and strict validation (unknown
//! keys, wrong types, out-of-range values are errors naming the file, line and key). It does not
//! merge layers: `settings` does that.
use crate::error::Error;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The per-directory file, looked up in the working directory.
pub const LOCAL_FILE: &str = "jobdl.toml";
/// The user file, under `$XDG_CONFIG_HOME` (or `~/.config`).
pub const USER_FILE: &str = "jobdl/config.toml";
/// The placeholder of the `destination` template.
pub const JOB_PLACEHOLDER: &str = "{job}";

/// What a key's value must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A non-empty string.
    Text,
    /// An absolute URL.
    Url,
    /// An integer in `min..=max`.
    Int {
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A duration: `"90s"`, `"15m"`, `"1h30m"` or a whole number of seconds.
    Duration {
        /// Whether zero is allowed.
        zero_ok: bool,
    },
    /// An array of `host[:port]` strings (checked as the allow-list checks them).
    Hosts,
    /// One of a fixed set of words (case-insensitive).
    Choice(&'static [&'static str]),
    /// The destination template (`{job}` is the only placeholder).
    Template,
    /// A number of bytes: an integer, or a string such as `"64MiB"`, `"1TiB"`, `"500kB"`.
    Size,
}

/// Where the value of a key may come from, above the files, and its built-in default.
#[derive(Debug, PartialEq)]
pub struct Key {
    /// Name in the file and in `config show`.
    pub name: &'static str,
    /// Type and range.
    pub kind: Kind,
    /// The clap argument id and the flag as the user types it.
    pub flag: Option<(&'static str, &'static str)>,
    /// The environment variable.
    pub env: Option<&'static str>,
    /// The built-in default as shown by `config show` (`None`: unset).
    pub default: Option<&'static str>,
    /// A timing knob whose environment variable ranks *below* the files (the CLI contract: flags
    /// and the config file win over `JOBDL_POLL_INTERVAL` and the `JOBDL_RETRY_*` knobs).
    pub env_below_files: bool,
}

const fn key(
    name: &'static str,
    kind: Kind,
    flag: Option<(&'static str, &'static str)>,
    env: Option<&'static str>,
    default: Option<&'static str>,
) -> Key {
    Key { name, kind, flag, env, default, env_below_files: false }
}

const fn knob(name: &'static str, env: &'static str, default: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Duration { zero_ok: true },
        flag: None,
        env: Some(env),
        default: Some(default),
        env_below_files: true,
    }
}

/// The cloud names accepted by `cloud`.
pub const CLOUDS: &[&str] = &crate::hosts::Cloud::NAMES;
/// The values of `color`.
pub const COLORS: &[&str] = &["auto", "always", "never"];

/// Every setting the files may hold, in `config show` order. Adding one is one line here (plus
/// typing it in `settings::Settings::resolve`, where it is read).
pub const KEYS: &[Key] = &[
    key(
        "project_endpoint",
        Kind::Url,
        Some(("project_endpoint", "--project-endpoint")),
        Some(crate::env::AZURE_AI_PROJECT_ENDPOINT),
        None,
    ),
    key(
        "subscription",
        Kind::Text,
        Some(("subscription", "--subscription")),
        Some(crate::env::AZURE_SUBSCRIPTION_ID),
        None,
    ),
    key(
        "resource_group",
        Kind::Text,
        Some(("resource_group", "--resource-group")),
        Some(crate::env::AZURE_RESOURCE_GROUP),
        None,
    ),
    key("workspace", Kind::Text, Some(("workspace", "--workspace")), Some(crate::env::AZUREML_WORKSPACE_NAME), None),
    key("mlflow_uri", Kind::Text, Some(("mlflow_uri", "--mlflow-uri")), Some(crate::env::MLFLOW_TRACKING_URI), None),
    key(
        "kfp_endpoint",
        Kind::Url,
        Some(("kfp_endpoint", "--kfp-endpoint")),
        Some(crate::env::KF_PIPELINES_ENDPOINT),
        None,
    ),
    key("kfp_namespace", Kind::Text, Some(("namespace", "--namespace")), Some(crate::env::JOBDL_KFP_NAMESPACE), None),
    key(
        "cloud",
        Kind::Choice(CLOUDS),
        Some(("cloud", "--cloud")),
        Some(crate::env::AZURE_CLOUD),
        Some(crate::hosts::Cloud::DEFAULT_NAME),
    ),
    key("destination", Kind::Template, Some(("path", "--path")), None, Some("./{job}")),
    key(
        "parallel",
        Kind::Int { min: 1, max: 256 },
        Some(("parallel", "--parallel")),
        Some(crate::env::JOBDL_PARALLEL),
        Some("8"),
    ),
    key("retries", Kind::Int { min: 1, max: 1000 }, Some(("retries", "--retries")), None, Some("10")),
    key("max_rate", Kind::Size, Some(("max_rate", "--max-rate")), Some(crate::env::JOBDL_MAX_RATE), None),
    key(
        "idle_timeout",
        Kind::Duration { zero_ok: false },
        Some(("idle_timeout", "--idle-timeout")),
        None,
        Some("120s"),
    ),
    key("lock_timeout", Kind::Duration { zero_ok: true }, Some(("lock_timeout", "--lock-timeout")), None, Some("0s")),
    key("allow_hosts", Kind::Hosts, Some(("allow_host", "--allow-host")), Some(crate::env::JOBDL_ALLOW_HOSTS), None),
    key("color", Kind::Choice(COLORS), Some(("color", "--color")), None, Some("auto")),
    key(
        "max_list_entries",
        Kind::Int { min: 1, max: 1_000_000_000 },
        None,
        Some(crate::env::JOBDL_MAX_LIST_ENTRIES),
        Some("1000000"),
    ),
    knob("poll_interval", crate::env::JOBDL_POLL_INTERVAL, "10s"),
    knob("retry_base_delay", crate::env::JOBDL_RETRY_BASE_DELAY, "500ms"),
    knob("retry_max_delay", crate::env::JOBDL_RETRY_MAX_DELAY, "30s"),
    knob("retry_after_cap", crate::env::JOBDL_RETRY_AFTER_CAP, "120s"),
    key("min_speed", Kind::Size, None, Some(crate::env::JOBDL_MIN_SPEED), Some("1KiB")),
    key("min_speed_time", Kind::Duration { zero_ok: false }, None, Some(crate::env::JOBDL_MIN_SPEED_TIME), Some("60s")),
    key(
        "archive_max_ratio",
        Kind::Int { min: 0, max: 1_000_000 },
        None,
        Some(crate::env::JOBDL_ARCHIVE_MAX_RATIO),
        Some("200"),
    ),
    key("archive_max_bytes", Kind::Size, None, Some(crate::env::JOBDL_ARCHIVE_MAX_BYTES), Some("1TiB")),
    key("chunk_size", Kind::Size, None, Some(crate::env::JOBDL_CHUNK_SIZE), Some("8MiB")),
];

/// A value, in the text form the flag would take (lists keep their items).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// One value.
    One(String),
    /// An `allow_hosts`-style list.
    Many(Vec<String>),
}

impl Value {
    /// The single value (a list's items joined by `,`).
    pub fn text(&self) -> String {
        match self {
            Value::One(s) => s.clone(),
            Value::Many(v) => v.join(","),
        }
    }
}

/// One key read from a file, with its line.
#[derive(Debug, Clone, PartialEq)]
pub struct FileValue {
    /// The validated value.
    pub value: Value,
    /// 1-based line of the key.
    pub line: usize,
}

/// One configuration file that exists, read and validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigFile {
    /// Its path (absolute when the working directory is known).
    pub path: PathBuf,
    /// Key → value.
    pub values: BTreeMap<&'static str, FileValue>,
}

/// The two files, in precedence order (local first). Missing files are `None`.
#[derive(Debug, Clone, Default)]
pub struct Files {
    /// `./jobdl.toml`.
    pub local: Option<ConfigFile>,
    /// The user file.
    pub user: Option<ConfigFile>,
    /// Where each file was looked for (for `config show`).
    pub searched: Vec<PathBuf>,
}

/// Where the user file lives: `$XDG_CONFIG_HOME/jobdl/config.toml` when that is set to an
/// absolute path, else `$HOME/.config/jobdl/config.toml` (`%USERPROFILE%` on Windows).
pub fn user_path(xdg: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    if let Some(x) = xdg.filter(|x| !x.is_empty() && Path::new(x).is_absolute()) {
        return Some(Path::new(x).join(USER_FILE));
    }
    home.filter(|h| !h.is_empty()).map(|h| Path::new(h).join(".config").join(USER_FILE))
}

impl Files {
    /// Read `./jobdl.toml` and the user file from the process environment.
    pub fn load() -> Result<Files, Error> {
        let var = crate::env::var;
        let home = var(crate::env::HOME).or_else(|| var(crate::env::USERPROFILE));
        let cwd = std::env::current_dir().unwrap_or_default();
        Files::load_from(&cwd.join(LOCAL_FILE), user_path(var(crate::env::XDG_CONFIG_HOME).as_deref(), home.as_deref()))
    }

    /// Read the files at these paths (a missing file is no file).
    pub fn load_from(local: &Path, user: Option<PathBuf>) -> Result<Files, Error> {
        let mut files = Files { searched: vec![local.to_path_buf()], ..Files::default() };
        files.local = read(local)?;
        if let Some(u) = user {
            files.searched.push(u.clone());
            // The same file twice (working directory = config directory) counts once.
            if u != local {
                files.user = read(&u)?;
            }
        }
        Ok(files)
    }

    /// The files in precedence order.
    pub fn layers(&self) -> impl Iterator<Item = &ConfigFile> {
        self.local.iter().chain(self.user.iter())
    }
}

fn read(path: &Path) -> Result<Option<ConfigFile>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::usage(format!("{}: the configuration file is not UTF-8", path.display())))?;
            parse(path, &text).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::usage(format!("{}: cannot read the configuration file: {e}", path.display()))),
    }
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at.min(text.len())).map_or(1, |t| t.matches('\n').count() + 1)
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// Parse and validate one file's text (`path` only names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, Error> {
    type Raw = BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>;
    let shown = path.display();
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| format!("{}: ", line_of(text, s.start))).unwrap_or_default();
        Error::usage(format!("{shown}:{line}invalid TOML: {}", e.message().trim()))
    })?;
    let mut values = BTreeMap::new();
    for (k, v) in raw {
        let line = line_of(text, k.span().start);
        let name = k.get_ref().as_str();
        let Some(key) = KEYS.iter().find(|key| key.name == name) else {
            let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
            return Err(Error::usage(format!(
                "{shown}:{line}: unknown key '{name}' (known keys: {})",
                known.join(", ")
            )));
        };
        let value =
            check(key, v.get_ref()).map_err(|why| Error::usage(format!("{shown}:{line}: key '{name}': {why}")))?;
        values.insert(key.name, FileValue { value, line });
    }
    Ok(ConfigFile { path: path.to_path_buf(), values })
}

/// Validate one value against its key's kind.
pub fn check(key: &Key, v: &toml::Value) -> Result<Value, String> {
    let found = type_name(v);
    let text = |what: &str| match v {
        toml::Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        toml::Value::String(_) => Err(format!("expected {what}, found an empty string")),
        _ => Err(format!("expected {what}, found {found}")),
    };
    match key.kind {
        Kind::Text => text("a string").map(Value::One),
        Kind::Url => {
            let s = text("a URL string")?;
            url::Url::parse(&s).map_err(|e| format!("invalid URL '{}': {e}", crate::redact::redact(&s)))?;
            Ok(Value::One(s))
        }
        Kind::Int { min, max } => {
            let range = format!("an integer from {min} to {max}");
            match v {
                toml::Value::Integer(i) if *i >= 0 && (min..=max).contains(&(*i as u64)) => {
                    Ok(Value::One(i.to_string()))
                }
                toml::Value::Integer(i) => Err(format!("{i} is out of range (expected {range})")),
                _ => Err(format!("expected {range}, found {found}")),
            }
        }
        Kind::Duration { zero_ok } => {
            let s = match v {
                toml::Value::Integer(i) if *i >= 0 => i.to_string(),
                toml::Value::Integer(i) => return Err(format!("{i} is negative")),
                _ => text("a duration such as \"90s\", \"15m\", \"1h30m\" or a number of seconds")?,
            };
            let d = crate::settings::parse_duration(&s, key.name).map_err(|e| e.to_string())?;
            if d.is_zero() && !zero_ok {
                return Err("must be more than 0".into());
            }
            Ok(Value::One(s))
        }
        Kind::Hosts => {
            let toml::Value::Array(items) = v else {
                return Err(format!("expected an array of strings such as [\"host:port\"], found {found}"));
            };
            let mut out = Vec::new();
            for item in items {
                match item {
                    toml::Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                    other => {
                        return Err(format!(
                            "expected an array of non-empty strings, found {} in it",
                            type_name(other)
                        ));
                    }
                }
            }
            crate::hosts::AllowList::new(crate::hosts::Cloud::AzureCloud, &out)?;
            Ok(Value::Many(out))
        }
        Kind::Choice(words) => {
            let s = text(&format!("one of {}", words.join(", ")))?;
            match words.iter().find(|w| w.eq_ignore_ascii_case(&s)) {
                Some(w) => Ok(Value::One((*w).to_string())),
                None => Err(format!("'{s}' is not one of {}", words.join(", "))),
            }
        }
        Kind::Size => {
            let s = match v {
                toml::Value::Integer(i) if *i >= 0 => i.to_string(),
                toml::Value::Integer(i) => return Err(format!("{i} is negative")),
                _ => text("a size such as \"64MiB\", \"1TiB\" or a number of bytes")?,
            };
            crate::settings::parse_size(&s, key.name).map_err(|e| e.to_string())?;
            Ok(Value::One(s))
        }
        Kind::Template => {
            let s = text("a directory such as \"./downloads/{job}\"")?;
            check_template(&s)?;
            Ok(Value::One(s))
        }
    }
}

/// A destination template: only `{job}` may appear in braces, and it may not name the bare
/// working directory.
pub fn check_template(s: &str) -> Result<(), String> {
    let rest = s.replace(JOB_PLACEHOLDER, "");
    if rest.contains('{') || rest.contains('}') {
        return Err(format!("'{s}': the only placeholder is {JOB_PLACEHOLDER}"));
    }
    if matches!(s.trim_end_matches('/'), "" | ".") {
        return Err(format!("'{s}' is the working directory itself; use e.g. \"./{JOB_PLACEHOLDER}\""));
    }
    Ok(())
}

/// The destination for `job` from a template: `{job}` replaced, a leading `~/` made `$HOME/`.
pub fn expand_destination(template: &str, job: &str, home: Option<&Path>) -> PathBuf {
    let s = template.replace(JOB_PLACEHOLDER, job);
    match (s.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<ConfigFile, String> {
        parse(Path::new("/cfg/jobdl.toml"), text).map_err(|e| {
            assert_eq!(e.exit_code(), 2);
            e.to_string()
        })
    }

    #[test]
    fn every_key_parses_and_keeps_its_line() {
        let f = p("# defaults\nworkspace = \"ws-1\"\nsubscription = \"sub\"\nresource_group = \"rg\"\n\
                   cloud = \"azurechinacloud\"\nparallel = 4\nretries = 3\nidle_timeout = \"5m\"\n\
                   lock_timeout = 30\nallow_hosts = [\"127.0.0.1:9000\", \"example.invalid\"]\n\
                   destination = \"./downloads/{job}\"\ncolor = \"never\"\npoll_interval = \"1s\"\n\
                   retry_base_delay = \"5ms\"\nretry_max_delay = \"1s\"\nretry_after_cap = \"2s\"\n\
                   min_speed = \"2KiB\"\nmin_speed_time = \"30s\"\narchive_max_ratio = 0\n\
                   archive_max_bytes = 1048576\nchunk_size = \"16MiB\"\n\
                   max_list_entries = 5000\nmax_rate = \"200M\"\nkfp_namespace = \"team-a\"\n")
        .unwrap();
        let v = |k: &str| f.values[k].clone();
        assert_eq!(v("workspace"), FileValue { value: Value::One("ws-1".into()), line: 2 });
        assert_eq!(v("cloud").value, Value::One("AzureChinaCloud".into()));
        assert_eq!(v("parallel"), FileValue { value: Value::One("4".into()), line: 6 });
        assert_eq!(v("lock_timeout").value, Value::One("30".into()));
        assert_eq!(v("allow_hosts").value, Value::Many(vec!["127.0.0.1:9000".into(), "example.invalid".into()]));
        assert_eq!(v("retry_after_cap").line, 16);
        assert_eq!(v("max_list_entries"), FileValue { value: Value::One("5000".into()), line: 22 });
        assert_eq!(v("kfp_namespace").value, Value::One("team-a".into()));
        assert_eq!(f.values.len(), KEYS.len() - 3, "all but project_endpoint, mlflow_uri and kfp_endpoint");
        let f = p("project_endpoint = \"https://a.services.ai.azure.com/api/projects/p\"").unwrap();
        assert_eq!(f.values["project_endpoint"].line, 1);
        let f = p("\nmlflow_uri = \"databricks://prod\"").unwrap();
        assert_eq!(f.values["mlflow_uri"], FileValue { value: Value::One("databricks://prod".into()), line: 2 });
    }

    #[test]
    fn unknown_keys_and_tables_name_file_line_and_key() {
        let e = p("parallel = 2\n\nparalel = 4\n").unwrap_err();
        assert!(e.starts_with("/cfg/jobdl.toml:3: unknown key 'paralel'"), "{e}");
        assert!(e.contains("known keys: project_endpoint,"), "{e}");
        let e = p("[defaults]\nworkspace = \"w\"\n").unwrap_err();
        assert!(e.starts_with("/cfg/jobdl.toml:1: unknown key 'defaults'"), "{e}");
    }

    #[test]
    fn wrong_types_and_ranges_are_rejected() {
        let cases = [
            ("parallel = \"8\"\n", "1: key 'parallel': expected an integer from 1 to 256, found a string"),
            ("\nparallel = 0\n", "2: key 'parallel': 0 is out of range"),
            ("parallel = 1000\n", "key 'parallel': 1000 is out of range"),
            ("retries = 2.5\n", "key 'retries': expected an integer from 1 to 1000, found a float"),
            ("idle_timeout = \"soon\"\n", "key 'idle_timeout': invalid idle_timeout 'soon'"),
            ("idle_timeout = 0\n", "key 'idle_timeout': must be more than 0"),
            ("lock_timeout = -1\n", "key 'lock_timeout': -1 is negative"),
            ("allow_hosts = \"a.invalid\"\n", "key 'allow_hosts': expected an array of strings"),
            ("allow_hosts = [1]\n", "key 'allow_hosts': expected an array of non-empty strings, found an integer"),
            ("allow_hosts = [\"https://h.invalid/x\"]\n", "key 'allow_hosts': "),
            ("workspace = true\n", "key 'workspace': expected a string, found a boolean"),
            ("workspace = \"\"\n", "key 'workspace': expected a string, found an empty string"),
            ("cloud = \"Mars\"\n", "key 'cloud': 'Mars' is not one of AzureCloud"),
            ("color = \"sometimes\"\n", "key 'color': 'sometimes' is not one of auto, always, never"),
            ("project_endpoint = \"not a url\"\n", "key 'project_endpoint': invalid URL"),
            ("destination = \"./{name}\"\n", "key 'destination': './{name}': the only placeholder is {job}"),
            ("destination = \".\"\n", "key 'destination': '.' is the working directory itself"),
            ("min_speed = \"fast\"\n", "key 'min_speed': invalid min_speed 'fast'"),
            ("archive_max_bytes = -1\n", "key 'archive_max_bytes': -1 is negative"),
            ("archive_max_ratio = 2000000\n", "key 'archive_max_ratio': 2000000 is out of range"),
            ("min_speed_time = 0\n", "key 'min_speed_time': must be more than 0"),
        ];
        for (text, want) in cases {
            let e = p(text).unwrap_err();
            assert!(e.starts_with("/cfg/jobdl.toml:"), "{text}: {e}");
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = p("parallel = 4\nworkspace = \"unterminated\n").unwrap_err();
        assert!(e.starts_with("/cfg/jobdl.toml:2: invalid TOML"), "{e}");
        let e = p("parallel = 4\nparallel = 5\n").unwrap_err();
        assert!(e.starts_with("/cfg/jobdl.toml:2: invalid TOML"), "{e}");
    }

    #[test]
    fn user_file_location() {
        let x = user_path(Some("/x"), Some("/home/u")).unwrap();
        assert_eq!(x, Path::new("/x/jobdl/config.toml"));
        assert_eq!(user_path(Some(""), Some("/home/u")).unwrap(), Path::new("/home/u/.config/jobdl/config.toml"));
        assert_eq!(user_path(Some("rel"), Some("/h")).unwrap(), Path::new("/h/.config/jobdl/config.toml"));
        assert_eq!(user_path(None, None), None);
    }

    #[test]
    fn files_on_disk_missing_present_and_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join(LOCAL_FILE);
        let user = dir.path().join("u.toml");
        let f = Files::load_from(&local, Some(user.clone())).unwrap();
        assert!(f.local.is_none() && f.user.is_none());
        assert_eq!(f.searched, vec![local.clone(), user.clone()]);
        std::fs::write(&local, "parallel = 2\n").unwrap();
        std::fs::write(&user, "parallel = 3\nretries = 4\n").unwrap();
        let f = Files::load_from(&local, Some(user.clone())).unwrap();
        let order: Vec<&str> = f
            .layers()
            .map(|c| c.values["parallel"].value.text())
            .map(|s| if s == "2" { "local" } else { "user" })
            .collect();
        assert_eq!(order, ["local", "user"]);
        std::fs::write(&user, [0xff, 0xfe]).unwrap();
        let e = Files::load_from(&local, Some(user.clone())).unwrap_err();
        assert!(e.to_string().contains("u.toml: the configuration file is not UTF-8"), "{e}");
        std::fs::remove_file(&local).unwrap();
        std::fs::create_dir(&local).unwrap();
        let e = Files::load_from(&local, None).unwrap_err();
        assert!(e.to_string().contains("cannot read the configuration file"), "{e}");
    }

    #[test]
    fn destination_templates() {
        assert_eq!(expand_destination("./dl/{job}", "j1", None), Path::new("./dl/j1"));
        assert_eq!(expand_destination("~/dl/{job}/x", "j1", Some(Path::new("/h"))), Path::new("/h/dl/j1/x"));
        assert_eq!(expand_destination("/abs", "j", None), Path::new("/abs"));
        assert!(check_template("./{job}").is_ok());
        assert!(check_template("./").is_err());
        assert!(check_template("{job}}").is_err());
    }
}
