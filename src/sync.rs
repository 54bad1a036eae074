//! Locking that survives a panic elsewhere.
//!
//! A std `Mutex` is poisoned when a thread panics while holding it. weir's mutexes guard
//! plain maps and IDs that are consistent after every statement, so the data is still good:
//! skipping the operation instead (`if let Ok(..) = m.lock()`) would silently drop a lease or
//! a metric. Every lock in the crate goes through [`lock`].

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, recovering the guard if another thread panicked while holding it.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Poisons `mutex` by panicking while holding it, for tests of the code that uses it.
#[cfg(test)]
pub(crate) fn poison<T: Send>(mutex: &Mutex<T>) {
    std::thread::scope(|s| {
        let held = s.spawn(|| {
            let _guard = mutex.lock();
            panic!("poisoning the mutex on purpose");
        });
        assert!(held.join().is_err());
    });
    assert!(mutex.is_poisoned());
}
