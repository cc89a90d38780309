//! A file's source URL and its one refresh: after a 403 the task's refresher is asked once for a
//! fresh URL (a SAS that expired during a long run), shared by every chunk of the file.
use super::FileTask;

/// The file's source URL, replaced at most once through the task's refresher after a 403.
pub(super) struct Source<'a> {
    pub(super) task: &'a FileTask,
    /// Current URL and its generation (0 = the planned URL).
    url: std::sync::Mutex<(url::Url, u32)>,
    gate: tokio::sync::Mutex<()>,
}

impl<'a> Source<'a> {
    pub(super) fn new(task: &'a FileTask) -> Self {
        Source { task, url: std::sync::Mutex::new((task.url.url(), 0)), gate: tokio::sync::Mutex::new(()) }
    }

    pub(super) fn current(&self) -> (url::Url, u32) {
        match self.url.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// After a 403 on a URL of generation `used`: whether to try again (with a newer URL).
    pub(super) async fn refresh_after_403(&self, used: u32) -> bool {
        let Some(r) = &self.task.refresh else { return false };
        let _one_at_a_time = self.gate.lock().await;
        let generation = self.current().1;
        if generation > used {
            return true; // a peer chunk refreshed it already
        }
        if generation >= 1 {
            return false; // refreshed once already
        }
        crate::log::log(1, format!("{}: access refused; asking the service for a fresh URL", self.task.display));
        match r.0.refresh().await {
            Some(u) => {
                if let Ok(mut g) = self.url.lock() {
                    *g = (u, generation + 1);
                }
                true
            }
            None => false,
        }
    }
}
