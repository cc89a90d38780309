//! The PyPI package: `pyproject.toml` is checked for the metadata the wheel needs, and the Python API
//! (`python/jobdl`) is tested by `tests/python/test_api.py` (stdlib `unittest`), run by `python3`
//! with `PYTHONPATH=python` and `JOBDL_BIN` pointing at the binary cargo built, against the demo
//! workspace served by the emulator on 127.0.0.1. `JOBDL_PYTHON` names another interpreter.
//! Without `python3` the test is skipped, except under `CI=true`, where it fails.
use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()))
}

fn str_at<'a>(t: &'a toml::Table, path: &[&str]) -> &'a str {
    let mut v: &toml::Value = t.get(path[0]).unwrap_or_else(|| panic!("missing {}", path[0]));
    for k in &path[1..] {
        v = v.get(k).unwrap_or_else(|| panic!("missing {}", path.join(".")));
    }
    v.as_str().unwrap_or_else(|| panic!("{} is not a string", path.join(".")))
}

#[test]
fn pyproject_builds_the_binary_into_a_complete_wheel() {
    let py = read_toml(&root().join("pyproject.toml"));
    assert_eq!(str_at(&py, &["build-system", "build-backend"]), "maturin");
    assert_eq!(str_at(&py, &["tool", "maturin", "bindings"]), "bin");
    assert_eq!(str_at(&py, &["tool", "maturin", "python-source"]), "python");
    assert_eq!(py["tool"]["maturin"]["strip"].as_bool(), Some(true), "the wheel's binary is stripped");
    assert!(root().join("python/jobdl/__init__.py").is_file());

    let project = py["project"].as_table().expect("[project]");
    assert_eq!(str_at(&py, &["project", "name"]), "jobdl");
    // The version is Cargo.toml's (maturin fills it in); a second copy here could drift.
    let dynamic: Vec<&str> = project["dynamic"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(dynamic, ["version"]);
    assert!(!project.contains_key("version"));
    for key in ["description", "requires-python", "license"] {
        assert!(!str_at(&py, &["project", key]).is_empty(), "[project].{key}");
    }
    assert_eq!(str_at(&py, &["project", "readme", "file"]), "README.md");
    assert_eq!(str_at(&py, &["project", "readme", "content-type"]), "text/markdown", "renders on PyPI");
    let classifiers = project["classifiers"].as_array().expect("classifiers");
    assert!(classifiers.len() >= 5);
    let urls = project["urls"].as_table().expect("[project.urls]");
    for key in ["Homepage", "Repository", "Issues", "Changelog"] {
        assert!(urls.get(key).and_then(|v| v.as_str()).is_some_and(|u| u.starts_with("https://")), "url {key}");
    }

    // The license agrees with Cargo.toml's.
    let cargo = read_toml(&root().join("Cargo.toml"));
    assert_eq!(str_at(&cargo, &["package", "license"]), str_at(&py, &["project", "license"]));

    // cargo-binstall's archive names are the ones release.yml attaches to a release.
    let url = str_at(&cargo, &["package", "metadata", "binstall", "pkg-url"]);
    assert_eq!(url, "{ repo }/releases/download/v{ version }/jobdl-{ target }{ archive-suffix }");
    let release = std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap();
    assert!(release.contains(r#"name="jobdl-${{ matrix.target }}""#), "release.yml archive names");
    assert!(release.contains(r#""dist/$name.tar.gz""#) && release.contains(r#""../$name.zip""#));
}

/// The interpreter: `JOBDL_PYTHON`, else `python3`; `None` when it does not run.
fn python() -> Option<PathBuf> {
    let py = std::env::var_os("JOBDL_PYTHON").filter(|v| !v.is_empty()).unwrap_or_else(|| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| PathBuf::from(py))
}

#[test]
fn python_api_runs_the_binary_against_the_demo_workspace() {
    let Some(python) = python() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no python3 >= 3.9 runs (set JOBDL_PYTHON): tests/python/test_api.py needs one"
        );
        eprintln!("skipped: no python3 >= 3.9 (set JOBDL_PYTHON)");
        return;
    };
    let emu = support::Emulator::start(support::demo_world(1 << 20));
    let tmp = tempfile::Builder::new().prefix("jobdl-python-api-").tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(&python)
        .arg(root().join("tests/python/test_api.py"))
        .current_dir(tmp.path())
        .env("PYTHONPATH", root().join("python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("JOBDL_BIN", env!("CARGO_BIN_EXE_jobdl"))
        .env("JOBDL_ACCESS_TOKEN", support::TOKEN)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("JOBDL_TEST_ENDPOINT", emu.project_endpoint())
        .env("JOBDL_TEST_ALLOW_HOST", emu.host_port())
        .env("JOBDL_TEST_TMP", tmp.path())
        .env("HOME", tmp.path())
        .env_remove("AZURE_AI_PROJECT_ENDPOINT")
        .env_remove("JOBDL_ALLOW_HOSTS")
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("KF_PIPELINES_ENDPOINT")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("run python3");
    emu.stop();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "tests/python/test_api.py failed ({:?}, {:.1}s)\nstdout:\n{}\nstderr:\n{stderr}",
        out.status,
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout)
    );
}
