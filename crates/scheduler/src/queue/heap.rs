//! A binary heap whose items can be found, replaced and removed by key (upstream's
//! `internal/heap`), ordered by a comparison function.

use std::collections::HashMap;

/// Whether the first item goes before the second.
pub type LessFn<T> = Box<dyn Fn(&T, &T) -> bool + Send + Sync>;

/// The heap.
pub struct KeyedHeap<T> {
    items: Vec<(String, T)>,
    index: HashMap<String, usize>,
    less: LessFn<T>,
}

impl<T> KeyedHeap<T> {
    /// An empty heap ordered by `less`.
    pub fn new(less: LessFn<T>) -> Self {
        Self {
            items: Vec::new(),
            index: HashMap::new(),
            less,
        }
    }

    /// How many items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is no item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether an item has `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The item with `key`.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.index.get(key).map(|i| &self.items[*i].1)
    }

    /// The first item.
    pub fn peek(&self) -> Option<&T> {
        self.items.first().map(|(_, t)| t)
    }

    /// Inserts `item` under `key`, replacing (and re-ordering) an item with the same key.
    pub fn push(&mut self, key: String, item: T) {
        if let Some(&i) = self.index.get(&key) {
            self.items[i].1 = item;
            self.fix(i);
            return;
        }
        let i = self.items.len();
        self.index.insert(key.clone(), i);
        self.items.push((key, item));
        self.sift_up(i);
    }

    /// Removes and returns the first item.
    pub fn pop(&mut self) -> Option<T> {
        if self.is_empty() {
            return None;
        }
        let key = self.items.first()?.0.clone();
        self.remove(&key)
    }

    /// Removes the item with `key`.
    pub fn remove(&mut self, key: &str) -> Option<T> {
        let i = self.index.remove(key)?;
        let last = self.items.len() - 1;
        if i != last {
            self.items.swap(i, last);
            self.index.insert(self.items[i].0.clone(), i);
        }
        let (_, item) = self.items.pop()?;
        if i < self.items.len() {
            self.fix(i);
        }
        Some(item)
    }

    fn lt(&self, a: usize, b: usize) -> bool {
        (self.less)(&self.items[a].1, &self.items[b].1)
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.items.swap(a, b);
        self.index.insert(self.items[a].0.clone(), a);
        self.index.insert(self.items[b].0.clone(), b);
    }

    fn fix(&mut self, i: usize) {
        if !self.sift_down(i) {
            self.sift_up(i);
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.lt(i, parent) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    /// Returns whether the item moved.
    fn sift_down(&mut self, start: usize) -> bool {
        let mut i = start;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut smallest = i;
            if l < self.items.len() && self.lt(l, smallest) {
                smallest = l;
            }
            if r < self.items.len() && self.lt(r, smallest) {
                smallest = r;
            }
            if smallest == i {
                return i != start;
            }
            self.swap(i, smallest);
            i = smallest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_updates_and_removes_by_key() {
        let mut h: KeyedHeap<i32> = KeyedHeap::new(Box::new(|a, b| a < b));
        for (k, v) in [("a", 5), ("b", 3), ("c", 8), ("d", 1), ("e", 4)] {
            h.push(k.into(), v);
        }
        h.push("c".into(), 0);
        assert_eq!(h.remove("b"), Some(3));
        assert_eq!(h.get("e"), Some(&4));
        let mut out = Vec::new();
        while let Some(v) = h.pop() {
            out.push(v);
        }
        assert_eq!(out, [0, 1, 4, 5]);
        assert!(h.is_empty() && !h.contains("a"));
    }
}
