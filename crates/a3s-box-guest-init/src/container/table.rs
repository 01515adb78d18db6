//! The sandbox's containers by id. A container is reserved before it is
//! built and while it is taken down, so a second create, or an `exec` that
//! arrives early, gets a clear answer instead of a half-made container.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use super::Container;

/// What is in a container's slot.
#[derive(Debug)]
enum Slot {
    /// Its root is being assembled.
    Creating,
    /// Ready for processes.
    Ready(Arc<Container>),
    /// Being removed.
    Removing,
}

/// The containers of the sandbox.
#[derive(Debug, Default)]
pub struct Containers {
    slots: Mutex<HashMap<String, Slot>>,
    /// The container `Boot` created: processes that name none run there.
    first: OnceLock<String>,
}

/// Why a container cannot be had.
fn busy(id: &str, slot: &Slot) -> String {
    match slot {
        Slot::Creating => format!("container {id} is being created"),
        Slot::Removing => format!("container {id} is being removed"),
        Slot::Ready(_) => format!("container {id} already exists"),
    }
}

impl Containers {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserve `id` for a container about to be created.
    pub fn reserve(&self, id: &str) -> Result<(), String> {
        let mut slots = self.lock();
        if let Some(slot) = slots.get(id) {
            return Err(busy(id, slot));
        }
        slots.insert(id.to_string(), Slot::Creating);
        Ok(())
    }

    /// The reserved container is ready.
    pub fn created(&self, container: Arc<Container>) {
        self.lock()
            .insert(container.id.clone(), Slot::Ready(container));
    }

    /// Make `id` the container processes run in when they name none.
    pub fn set_first(&self, id: &str) {
        let _ = self.first.set(id.to_string());
    }

    /// Give up the slot of `id` (a failed create, a finished remove).
    pub fn release(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The ready container named `id`, or the first one for `None`.
    pub fn get(&self, id: Option<&str>) -> Result<Arc<Container>, String> {
        let id = match id {
            Some(id) => id,
            None => self
                .first
                .get()
                .ok_or("no container given, and the sandbox has no first container")?,
        };
        match self.lock().get(id) {
            Some(Slot::Ready(c)) => Ok(Arc::clone(c)),
            Some(slot) => Err(busy(id, slot)),
            None => Err(format!("no such container: {id}")),
        }
    }

    /// Every ready container.
    pub fn ready(&self) -> Vec<Arc<Container>> {
        self.lock()
            .values()
            .filter_map(|slot| match slot {
                Slot::Ready(c) => Some(Arc::clone(c)),
                _ => None,
            })
            .collect()
    }

    /// Take the ready container `id` for removal.
    pub fn begin_remove(&self, id: &str) -> Result<Arc<Container>, String> {
        let mut slots = self.lock();
        match slots.remove(id) {
            Some(Slot::Ready(c)) => {
                slots.insert(id.to_string(), Slot::Removing);
                Ok(c)
            }
            Some(other) => {
                let why = busy(id, &other);
                slots.insert(id.to_string(), other);
                Err(why)
            }
            None => Err(format!("no such container: {id}")),
        }
    }

    /// A removal that failed: the container is ready again.
    pub fn restore(&self, container: Arc<Container>) {
        self.created(container);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::root::Layout;

    fn container(id: &str) -> Arc<Container> {
        let layout = Layout {
            dir: String::new(),
            lower: String::new(),
            root: String::new(),
            merged: String::new(),
            rw_tmpfs: None,
            rw_dir: None,
            upper: String::new(),
            work: String::new(),
            run: String::new(),
        };
        Arc::new(Container::new(
            id.into(),
            id.into(),
            layout,
            None,
            Vec::new(),
        ))
    }

    #[test]
    fn containers_are_reserved_then_ready_then_removed() {
        let t = Containers::default();
        assert_eq!(t.get(Some("a")).unwrap_err(), "no such container: a");
        t.reserve("a").unwrap();
        assert!(t.ready().is_empty());
        assert_eq!(t.reserve("a").unwrap_err(), "container a is being created");
        assert_eq!(
            t.get(Some("a")).unwrap_err(),
            "container a is being created"
        );
        t.created(container("a"));
        assert_eq!(t.reserve("a").unwrap_err(), "container a already exists");
        assert_eq!(t.get(Some("a")).unwrap().id, "a");
        assert_eq!(t.ready().len(), 1);
        let taken = t.begin_remove("a").unwrap();
        assert_eq!(taken.id, "a");
        assert!(t.ready().is_empty());
        assert_eq!(
            t.get(Some("a")).unwrap_err(),
            "container a is being removed"
        );
        assert_eq!(
            t.begin_remove("a").unwrap_err(),
            "container a is being removed"
        );
        t.release("a");
        assert!(t.reserve("a").is_ok());
    }

    #[test]
    fn processes_naming_no_container_run_in_the_first() {
        let t = Containers::default();
        assert!(t.get(None).is_err());
        t.reserve("box").unwrap();
        t.created(container("box"));
        t.set_first("box");
        assert_eq!(t.get(None).unwrap().id, "box");
    }
}
