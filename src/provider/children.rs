//! A job's child runs: a pipeline's steps (`download --children`) and a sweep's trials
//! (`download --top K`). Every field comes from a response and is hostile: the id is checked as
//! one path component and the name made a safe folder name by the app before either is used.
use crate::best::Goal;

/// One child run of a job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Child {
    /// Its run id (the Azure ML job name, the MLflow run id): what `download` takes as JOB.
    pub id: String,
    /// Its step or display name, verbatim, when the service gives one.
    pub name: Option<String>,
    /// Its status as the service words it.
    pub status: String,
    /// The ranked metric's latest value (`--top`), when the child logged it.
    pub value: Option<f64>,
}

/// The `k` children with the best value for `goal`, best first. A child without a finite value
/// of the metric is left out (it cannot be ranked); equal values keep the lower id first, so the
/// choice is the same on every run.
pub fn best(children: Vec<Child>, goal: Goal, k: usize) -> Vec<Child> {
    let mut ranked: Vec<(f64, Child)> =
        children.into_iter().filter_map(|c| c.value.filter(|v| v.is_finite()).map(|v| (v, c))).collect();
    ranked.sort_by(|(a, ca), (b, cb)| {
        let order = match goal {
            Goal::Min => a.total_cmp(b),
            Goal::Max => b.total_cmp(a),
        };
        order.then_with(|| ca.id.cmp(&cb.id))
    });
    ranked.into_iter().take(k).map(|(_, c)| c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(id: &str, value: Option<f64>) -> Child {
        Child { id: id.into(), value, ..Child::default() }
    }

    #[test]
    fn the_best_k_with_the_metric_are_chosen_deterministically() {
        let all = || {
            vec![
                child("t1", Some(0.5)),
                child("t2", None),
                child("t3", Some(0.1)),
                child("t4", Some(f64::NAN)),
                child("t5", Some(0.9)),
                child("t0", Some(0.5)),
            ]
        };
        let ids = |v: Vec<Child>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(ids(best(all(), Goal::Min, 2)), ["t3", "t0"]);
        assert_eq!(ids(best(all(), Goal::Max, 2)), ["t5", "t0"]);
        assert_eq!(ids(best(all(), Goal::Max, 10)), ["t5", "t0", "t1", "t3"]);
        assert!(best(all(), Goal::Min, 0).is_empty());
    }
}
