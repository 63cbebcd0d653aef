//! How many streams (Watch, followed logs) one principal may hold open at once: a leaked or
//! hostile credential cannot pin the master's memory and a broadcast subscription per
//! stream by opening thousands. A slot is taken when the call is admitted and given back
//! when its answer ends, however it ends (finished, cancelled, revoked, client gone).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tonic::body::Body;

use crate::model::Principal;

/// Streams one user (all its sessions together) or one API token may hold open.
pub const MAX_STREAMS_PER_PRINCIPAL: usize = 32;

/// Open streams per principal.
#[derive(Default)]
pub struct StreamSlots {
    open: Mutex<HashMap<String, usize>>,
}

/// One open stream's slot; given back when dropped.
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    key: String,
}

fn key(p: &Principal) -> String {
    match p {
        Principal::User { username, .. } => format!("user:{username}"),
        Principal::ApiToken { id, .. } => format!("token:{id}"),
        other => other.actor(),
    }
}

impl StreamSlots {
    /// A slot for one more stream of `p`, or the sentence for RESOURCE_EXHAUSTED.
    pub fn take(self: &Arc<Self>, p: &Principal) -> Result<StreamSlot, String> {
        let key = key(p);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= MAX_STREAMS_PER_PRINCIPAL {
            return Err(format!(
                "{} already has {MAX_STREAMS_PER_PRINCIPAL} streams open (Watch, followed logs), the most one user or token may; close one first",
                p.actor()
            ));
        }
        *n += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            key,
        })
    }

    /// Streams `p` holds open now.
    pub fn open_of(&self, p: &Principal) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&key(p)).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// An answer's body that holds its stream slot until it is dropped.
pub fn holding(body: Body, slot: StreamSlot) -> Body {
    Body::new(exile_api::serve::Holding::new(body, slot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    fn user(name: &str) -> Principal {
        Principal::User {
            username: name.into(),
            role: Role::Viewer,
            session_hash: String::new(),
            expires_at: 0,
        }
    }

    #[test]
    fn slots_are_per_principal_and_come_back_when_dropped() {
        let slots = Arc::new(StreamSlots::default());
        let (alice, bob) = (user("alice"), user("bob"));
        let mut held: Vec<StreamSlot> = (0..MAX_STREAMS_PER_PRINCIPAL)
            .map(|_| slots.take(&alice).unwrap())
            .collect();
        let refused = slots.take(&alice).err().unwrap();
        assert!(
            refused.contains("alice") && refused.contains("32 streams"),
            "{refused}"
        );
        // Another principal is not held back by alice's streams.
        let b = slots.take(&bob).unwrap();
        held.pop();
        assert!(slots.take(&alice).is_ok());
        drop(held);
        drop(b);
        assert_eq!(slots.open_of(&alice), 0);
        assert_eq!(slots.open_of(&bob), 0);
        assert!(
            slots.open.lock().unwrap().is_empty(),
            "no entry left behind"
        );
    }
}
