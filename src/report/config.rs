//! `jobdl config show`: every resolved setting and where it came from, as a table or a versioned
//! JSON document. Secrets are never printed: only whether they are set.
use super::Printer;
use super::listing::{out, table};
use crate::config::{Kind, Value};
use crate::env;
use crate::env::JOBDL_ACCESS_TOKEN;
use crate::settings::{Resolved, Source};
use serde_json::{Value as Json, json};

fn source_json(s: &Source) -> Json {
    match s {
        Source::Flag(f) => json!({"kind": "flag", "flag": f}),
        Source::Env(v) => json!({"kind": "env", "var": v}),
        Source::File { path, line } => json!({"kind": "file", "path": path.display().to_string(), "line": line}),
        Source::Default => json!({"kind": "default"}),
    }
}

/// The `config show --json` document (version 1).
pub fn config_json(r: &Resolved, token_set: bool) -> Json {
    let mut settings = serde_json::Map::new();
    for s in &r.settings {
        let value = match (&s.value, s.key.kind) {
            (None, _) => Json::Null,
            (Some(Value::Many(v)), _) => json!(v),
            (Some(Value::One(v)), Kind::Int { .. }) => v.parse::<u64>().map(Json::from).unwrap_or_else(|_| json!(v)),
            (Some(Value::One(v)), _) => json!(crate::redact::redact(v)),
        };
        settings.insert(s.key.name.to_string(), json!({"value": value, "source": source_json(&s.source)}));
    }
    let token_source = if token_set { Source::Env(env::JOBDL_ACCESS_TOKEN) } else { Source::Default };
    settings.insert(
        "access_token".into(),
        json!({"value": if token_set { "set" } else { "unset" }, "source": source_json(&token_source)}),
    );
    let loaded: Vec<&std::path::Path> = r.files.layers().map(|f| f.path.as_path()).collect();
    let files: Vec<Json> = r
        .files
        .searched
        .iter()
        .map(|p| json!({"path": p.display().to_string(), "found": loaded.contains(&p.as_path())}))
        .collect();
    json!({"version": 1, "files": files, "settings": settings})
}

impl Printer {
    /// Print the resolved settings (table or JSON) on stdout.
    pub fn config(&self, r: &Resolved, token_set: bool) {
        if self.json {
            out(&format!("{}\n", config_json(r, token_set)));
            return;
        }
        let mut rows = vec![vec!["KEY".to_string(), "VALUE".into(), "SOURCE".into()]];
        for s in &r.settings {
            let value = match &s.value {
                None => "-".to_string(),
                Some(Value::Many(v)) if v.is_empty() => "-".to_string(),
                Some(v) => crate::redact::redact(&v.text()),
            };
            let source = match (&s.source, &s.value) {
                (Source::Default, None) => "unset".to_string(),
                (src, _) => src.to_string(),
            };
            rows.push(vec![s.key.name.to_string(), value, source]);
        }
        let (token, source) =
            if token_set { ("set", format!("env {JOBDL_ACCESS_TOKEN}")) } else { ("unset", "unset".to_string()) };
        rows.push(vec!["access_token".into(), token.into(), source]);
        let mut text = table(&rows);
        text.push_str("\nconfiguration files (the first wins):\n");
        let loaded: Vec<&std::path::Path> = r.files.layers().map(|f| f.path.as_path()).collect();
        for p in &r.files.searched {
            let state = if loaded.contains(&p.as_path()) { "found" } else { "not found" };
            text.push_str(&format!("  {}  ({state})\n", p.display()));
        }
        out(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigFile, FileValue, Files};
    use crate::settings::{ArgLayer, resolve};
    use std::path::PathBuf;

    #[test]
    fn document_names_sources_and_hides_the_token() {
        let mut file = ConfigFile { path: PathBuf::from("/w/jobdl.toml"), ..ConfigFile::default() };
        file.values.insert("parallel", FileValue { value: Value::One("4".into()), line: 3 });
        let files =
            Files { local: Some(file), user: None, searched: vec!["/w/jobdl.toml".into(), "/u/config.toml".into()] };
        let mut args = ArgLayer::new();
        args.insert("retries", (Value::One("3".into()), Source::Flag("--retries")));
        let r = resolve(&args, files, &|n| (n == "JOBDL_ALLOW_HOSTS").then(|| "a.invalid, b.invalid".to_string()));
        let v = config_json(&r, true);
        assert_eq!(v["version"], 1);
        assert_eq!(v["settings"]["parallel"]["value"], 4);
        assert_eq!(v["settings"]["parallel"]["source"], json!({"kind":"file","path":"/w/jobdl.toml","line":3}));
        assert_eq!(v["settings"]["retries"]["source"], json!({"kind":"flag","flag":"--retries"}));
        assert_eq!(v["settings"]["allow_hosts"]["value"], json!(["a.invalid", "b.invalid"]));
        assert_eq!(v["settings"]["allow_hosts"]["source"]["var"], "JOBDL_ALLOW_HOSTS");
        assert_eq!(v["settings"]["cloud"], json!({"value":"AzureCloud","source":{"kind":"default"}}));
        assert_eq!(v["settings"]["workspace"]["value"], Json::Null);
        assert_eq!(v["settings"]["access_token"]["value"], "set");
        assert_eq!(v["files"][0], json!({"path":"/w/jobdl.toml","found":true}));
        assert_eq!(v["files"][1]["found"], false);
        assert_eq!(config_json(&r, false)["settings"]["access_token"]["value"], "unset");
    }
}
