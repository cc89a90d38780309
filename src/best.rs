//! `download --best METRIC:min|max`: the step where a logged metric was best, and the one
//! checkpoint folder of the job's files that belongs to it. Pure functions; `app::best` fetches
//! the metric history and narrows the plan.
//!
//! The naming rule: a folder (at any depth) whose name is `checkpoint-<n>`, `checkpoint_<n>`,
//! `step-<n>`, `step_<n>`, `epoch=<n>` or `epoch_<n>` (case-insensitive, `<n>` decimal digits,
//! leading zeros allowed) is the checkpoint of step `<n>`; the number is compared with the
//! metric's `step` as the training logged it (log the metric with `step=epoch` when checkpoints
//! are per epoch). A file belongs to the outermost such folder on its path.
use crate::error::Error;

/// Whether smaller or larger is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// The smallest value wins (`loss:min`).
    Min,
    /// The largest value wins (`accuracy:max`).
    Max,
}

/// `--best METRIC:min|max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestSpec {
    /// The metric's key as logged.
    pub metric: String,
    /// Which end wins.
    pub goal: Goal,
}

/// Parse `METRIC:min|max` (the metric name may itself contain `:`; the last one separates).
pub fn parse_spec(raw: &str) -> Result<BestSpec, Error> {
    let bad = || {
        Error::usage(format!(
            "--best '{}': expected METRIC:min or METRIC:max (e.g. --best eval_loss:min)",
            crate::safepath::printable(raw)
        ))
    };
    let (metric, goal) = raw.trim().rsplit_once(':').ok_or_else(bad)?;
    let goal = match goal.trim().to_ascii_lowercase().as_str() {
        "min" => Goal::Min,
        "max" => Goal::Max,
        _ => return Err(bad()),
    };
    let metric = metric.trim();
    if metric.is_empty() || metric.chars().any(char::is_control) {
        return Err(bad());
    }
    Ok(BestSpec { metric: metric.to_string(), goal })
}

/// One logged value of a metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricPoint {
    /// The training step it was logged at.
    pub step: i64,
    /// The value.
    pub value: f64,
    /// When it was logged (milliseconds since the epoch; 0 when unknown).
    pub timestamp: i64,
}

/// The best point of a history: the smallest (`Min`) or largest (`Max`) finite value; a tie
/// goes to the earliest step (then the earliest log time), the checkpoint that reached the value
/// first. NaN and infinite values are never chosen. `None` when no value is finite.
pub fn pick(points: &[MetricPoint], goal: Goal) -> Option<MetricPoint> {
    let mut best: Option<MetricPoint> = None;
    for p in points.iter().filter(|p| p.value.is_finite()) {
        let better = match best {
            None => true,
            Some(b) => {
                let strictly = match goal {
                    Goal::Min => p.value < b.value,
                    Goal::Max => p.value > b.value,
                };
                strictly || (p.value == b.value && (p.step, p.timestamp) < (b.step, b.timestamp))
            }
        };
        if better {
            best = Some(*p);
        }
    }
    best
}

/// The step number a folder name stands for, by the naming rule (see the module docs).
pub fn folder_step(name: &str) -> Option<u64> {
    let lower = name.to_ascii_lowercase();
    let digits = ["checkpoint-", "checkpoint_", "step-", "step_", "epoch=", "epoch_"]
        .iter()
        .find_map(|prefix| lower.strip_prefix(prefix))?;
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A checkpoint folder among the job's files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Checkpoint {
    /// Its path as jobdl prints paths (`artifacts/checkpoints/checkpoint-500`), no trailing `/`.
    pub folder: String,
    /// The step its name stands for.
    pub step: u64,
}

/// The checkpoint folders the files at `paths` (`/`-separated, as printed) are in: for each file,
/// the outermost folder on its path that the naming rule recognises. Sorted, without repeats.
pub fn checkpoints<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<Checkpoint> {
    let mut found: Vec<Checkpoint> = Vec::new();
    for path in paths {
        let parts: Vec<&str> = path.split('/').collect();
        // The last part is the file's own name, never a folder.
        let dirs = &parts[..parts.len().saturating_sub(1)];
        if let Some(i) = dirs.iter().position(|d| folder_step(d).is_some()) {
            let step = folder_step(dirs[i]).unwrap_or_default();
            found.push(Checkpoint { folder: dirs[..=i].join("/"), step });
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The one checkpoint folder of `step`, or why there is none: no folder of that step (the error
/// lists the checkpoint folders that exist), or several (it lists them).
pub fn choose(found: &[Checkpoint], step: i64, spec: &BestSpec, value: f64) -> Result<Checkpoint, Error> {
    let matching: Vec<&Checkpoint> = found.iter().filter(|c| i64::try_from(c.step).ok() == Some(step)).collect();
    let best = format!("--best {}: the best value, {value}, was logged at step {step}", spec.metric);
    let listed = |cs: &[&Checkpoint]| {
        let mut shown: Vec<String> = cs.iter().take(20).map(|c| format!("{}/", c.folder)).collect();
        if cs.len() > 20 {
            shown.push(format!("… ({} more)", cs.len() - 20));
        }
        shown.join(", ")
    };
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] if found.is_empty() => Err(Error::NotFound(format!(
            "{best}, but the job has no checkpoint folder (named checkpoint-<step>, checkpoint_<step>, step-<n>, \
             step_<n>, epoch=<n> or epoch_<n>)"
        ))),
        [] => Err(Error::NotFound(format!(
            "{best}, but no checkpoint folder is named for that step; the job has: {}",
            listed(&found.iter().collect::<Vec<_>>())
        ))),
        several => Err(Error::NotFound(format!(
            "{best}, and several checkpoint folders are named for it: {}; download one with --include '<folder>/**'",
            listed(several)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(step: i64, value: f64) -> MetricPoint {
        MetricPoint { step, value, timestamp: step * 10 }
    }

    #[test]
    fn specs() {
        assert_eq!(parse_spec("loss:min").unwrap(), BestSpec { metric: "loss".into(), goal: Goal::Min });
        assert_eq!(parse_spec(" eval/acc : MAX ").unwrap(), BestSpec { metric: "eval/acc".into(), goal: Goal::Max });
        assert_eq!(parse_spec("val:loss:min").unwrap().metric, "val:loss");
        for bad in ["loss", "loss:", ":min", "loss:lowest", "", "lo\u{7}ss:min"] {
            let e = parse_spec(bad).unwrap_err();
            assert!(matches!(e, Error::Usage(_)) && e.to_string().contains("METRIC:min"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_best_point_skips_nan_and_ties_go_to_the_earliest_step() {
        let h = [p(100, 0.9), p(200, 0.4), p(300, f64::NAN), p(400, 0.4), p(500, 0.6)];
        assert_eq!(pick(&h, Goal::Min), Some(p(200, 0.4)));
        assert_eq!(pick(&h, Goal::Max), Some(p(100, 0.9)));
        // Logged out of order: still the earliest step of the tie.
        let h = [p(400, 0.4), p(200, 0.4)];
        assert_eq!(pick(&h, Goal::Min).map(|b| b.step), Some(200));
        assert_eq!(pick(&[p(1, f64::NAN), p(2, f64::INFINITY)], Goal::Max), None);
        assert_eq!(pick(&[], Goal::Min), None);
    }

    #[test]
    fn folder_names_of_the_naming_rule() {
        for (name, step) in [
            ("checkpoint-500", Some(500)),
            ("checkpoint_500", Some(500)),
            ("Checkpoint-0500", Some(500)),
            ("step_12", Some(12)),
            ("step-12", Some(12)),
            ("epoch=3", Some(3)),
            ("epoch_3", Some(3)),
            ("checkpoint-", None),
            ("checkpoint-5a", None),
            ("checkpoints", None),
            ("epoch=3-step=100.ckpt", None),
            ("last", None),
            ("step_99999999999999999999", None),
        ] {
            assert_eq!(folder_step(name), step, "{name}");
        }
    }

    #[test]
    fn checkpoint_folders_are_found_at_any_depth_and_the_outermost_wins() {
        let paths = [
            "artifacts/checkpoints/checkpoint-100/model.safetensors",
            "artifacts/checkpoints/checkpoint-100/optimizer.pt",
            "artifacts/checkpoints/checkpoint-200/model.safetensors",
            "artifacts/checkpoints/checkpoint-200/step_5/inner.bin",
            "artifacts/epoch=3/weights.bin",
            "artifacts/logs/step_7.txt",
            "artifacts/README.txt",
        ];
        let found = checkpoints(paths);
        assert_eq!(
            found,
            vec![
                Checkpoint { folder: "artifacts/checkpoints/checkpoint-100".into(), step: 100 },
                Checkpoint { folder: "artifacts/checkpoints/checkpoint-200".into(), step: 200 },
                Checkpoint { folder: "artifacts/epoch=3".into(), step: 3 },
            ]
        );
    }

    #[test]
    fn one_folder_of_the_step_or_an_error_listing_what_exists() {
        let spec = parse_spec("loss:min").unwrap();
        let found = checkpoints([
            "artifacts/checkpoint-100/a",
            "artifacts/checkpoint-200/a",
            "named-outputs/ckpt/step_200/a",
            "artifacts/epoch=3/a",
        ]);
        assert_eq!(choose(&found, 100, &spec, 0.5).unwrap().folder, "artifacts/checkpoint-100");
        assert_eq!(choose(&found, 3, &spec, 0.5).unwrap().folder, "artifacts/epoch=3");
        let none = choose(&found, 300, &spec, 0.25).unwrap_err().to_string();
        assert!(none.contains("step 300") && none.contains("0.25"), "{none}");
        assert!(none.contains("artifacts/checkpoint-100/") && none.contains("artifacts/epoch=3/"), "{none}");
        let several = choose(&found, 200, &spec, 0.5).unwrap_err().to_string();
        assert!(several.contains("several") && several.contains("named-outputs/ckpt/step_200/"), "{several}");
        assert!(!several.contains("checkpoint-100"), "{several}");
        let empty = choose(&[], 100, &spec, 0.5).unwrap_err().to_string();
        assert!(empty.contains("no checkpoint folder") && empty.contains("epoch=<n>"), "{empty}");
        assert!(choose(&found, -1, &spec, 0.5).is_err());
    }
}
