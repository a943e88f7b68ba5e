//! The lists of `GET /cluster/resources` (docs/proxmox-api.md §3.3), decoded entry by
//! entry: an entry of the type asked for is decoded, and fails the list if it does not;
//! every other entry is skipped, whatever it holds. One entry at a time is held as a
//! [`Value`], never the whole list.

use super::types::{ClusterNode, ClusterResource};
use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::marker::PhantomData;

/// What an entry of a resource list decodes to, and which `type`s it is for.
pub(crate) trait Listed: DeserializeOwned {
    fn is_listed(kind: &str) -> bool;
}

/// Guests: entries of type `lxc` and `qemu`.
impl Listed for ClusterResource {
    fn is_listed(kind: &str) -> bool {
        matches!(kind, "lxc" | "qemu")
    }
}

/// Nodes: entries of type `node`.
impl Listed for ClusterNode {
    fn is_listed(kind: &str) -> bool {
        kind == "node"
    }
}

/// The entries of a resource list whose `type` a `T` is for, in order.
#[derive(Debug)]
pub(crate) struct Resources<T>(pub Vec<T>);

impl<'de, T: Listed> Deserialize<'de> for Resources<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(ResourcesVisitor(PhantomData))
    }
}

struct ResourcesVisitor<T>(PhantomData<T>);

impl<'de, T: Listed> Visitor<'de> for ResourcesVisitor<T> {
    type Value = Resources<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Resources<T>, A::Error> {
        let mut out = Vec::new();
        while let Some(entry) = seq.next_element::<Value>()? {
            let listed = entry
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(T::is_listed);
            if listed {
                out.push(T::deserialize(entry).map_err(de::Error::custom)?);
            }
        }
        Ok(Resources(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guests(text: &str) -> Result<Vec<ClusterResource>, String> {
        serde_json::from_str::<Resources<ClusterResource>>(text)
            .map(|r| r.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn keeps_the_entries_of_its_type_and_skips_the_rest_unread() {
        let list = guests(
            r#"[{"id":"lxc/101","vmid":"101","type":"lxc","node":"pve1"},
                {"id":"node/pve1","type":"node","vmid":"not one"},
                {"type":7},{},"x",
                {"id":"qemu/100","vmid":100,"type":"qemu","node":"pve2","template":1}]"#,
        )
        .unwrap();
        let ids: Vec<&str> = list.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ids, ["lxc/101", "qemu/100"]);
        assert!(list[1].template);
        let nodes: Vec<ClusterNode> = serde_json::from_str::<Resources<ClusterNode>>(
            r#"[{"type":"node","node":"pve1","status":"online"},{"type":"lxc","vmid":101}]"#,
        )
        .unwrap()
        .0;
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].node, "pve1");
    }

    #[test]
    fn an_entry_of_its_type_that_does_not_decode_fails_the_list() {
        let e = guests(r#"[{"type":"lxc","id":"lxc/101","node":"pve1"}]"#).unwrap_err();
        assert!(e.starts_with("missing field `vmid`"), "{e}");
        let e = guests(r#"{"type":"lxc"}"#).unwrap_err();
        assert!(
            e.starts_with("invalid type: map, expected a sequence"),
            "{e}"
        );
    }
}
