//! Data plugins keep for one scheduling cycle (upstream's `framework.CycleState`): each plugin
//! stores what its PreFilter or PreScore computed and reads it back at Filter or Score.

use std::any::Any;
use std::collections::{HashMap, HashSet};

/// What a plugin stores in the cycle state. `clone_data` must deep-copy whatever
/// `add_pod`/`remove_pod` change, because preemption simulates on copies.
pub trait StateData: Any + Send + Sync {
    /// A copy for a simulation.
    fn clone_data(&self) -> Box<dyn StateData>;
    /// Upcast for reading.
    fn as_any(&self) -> &dyn Any;
    /// Upcast for changing.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Clone + Send + Sync> StateData for T {
    fn clone_data(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The per-cycle store, keyed by plugin-chosen names.
#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn StateData>>,
    /// Filter plugins whose PreFilter returned Skip.
    pub skip_filter: HashSet<&'static str>,
    /// Score plugins whose PreScore returned Skip.
    pub skip_score: HashSet<&'static str>,
    /// Per filter plugin (framework order): whether it runs; set after PreFilter so the per-node
    /// loop does not look names up. Empty means "ask `skip_filter`".
    pub filter_enabled: Vec<bool>,
}

impl CycleState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value` under `key`.
    pub fn write<T: StateData>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    /// Reads the value under `key`, when it is a `T`.
    pub fn read<T: 'static>(&self, key: &'static str) -> Option<&T> {
        let data: &dyn StateData = &**self.data.get(key)?;
        data.as_any().downcast_ref()
    }

    /// Changes the value under `key`, when it is a `T`.
    pub fn read_mut<T: 'static>(&mut self, key: &'static str) -> Option<&mut T> {
        let data: &mut dyn StateData = &mut **self.data.get_mut(key)?;
        data.as_any_mut().downcast_mut()
    }

    /// A deep copy (for preemption's dry runs).
    pub fn clone_state(&self) -> Self {
        Self {
            data: self
                .data
                .iter()
                .map(|(k, v)| {
                    let v: &dyn StateData = &**v;
                    (*k, v.clone_data())
                })
                .collect(),
            skip_filter: self.skip_filter.clone(),
            skip_score: self.skip_score.clone(),
            filter_enabled: self.filter_enabled.clone(),
        }
    }
}

impl std::fmt::Debug for CycleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CycleState")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("skip_filter", &self.skip_filter)
            .field("skip_score", &self.skip_score)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_are_independent() {
        let mut s = CycleState::new();
        s.write("k", vec![1, 2]);
        let mut c = s.clone_state();
        if let Some(v) = c.read_mut::<Vec<i32>>("k") {
            v.push(3);
        }
        assert_eq!(s.read::<Vec<i32>>("k"), Some(&vec![1, 2]));
        assert_eq!(c.read::<Vec<i32>>("k"), Some(&vec![1, 2, 3]));
        assert!(s.read::<String>("k").is_none());
    }
}
