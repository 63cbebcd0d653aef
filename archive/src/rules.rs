//! The safety rules on names and links, and the model of the tree an archive builds. Pure: no
//! I/O, so `inspect` and `extract` reach the same verdict on the same entries.

use std::collections::{HashMap, VecDeque};

/// A path inside the archive's root, as its normal components (no `.`, `..` or empty parts).
pub(crate) type Rel = Vec<Vec<u8>>;

/// Longest file or directory name Linux accepts, bytes.
pub(crate) const MAX_COMPONENT_BYTES: usize = 255;

/// Most symbolic links one link target may go through, as the kernel's own bound (ELOOP).
const MAX_LINK_HOPS: usize = 40;

/// Text of a stored name for messages (lossy for names that are not UTF-8).
pub(crate) fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Joins components with `/`.
pub(crate) fn join(rel: &[Vec<u8>]) -> Vec<u8> {
    rel.join(&b'/')
}

/// Checks the raw bytes common to entry names and link targets (length, NUL).
fn check_bytes(what: &str, name: &[u8], max_path: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if name.contains(&0) {
        return Err(format!("{what} contains a NUL byte"));
    }
    if name.len() > max_path {
        return Err(format!(
            "{what} is {} bytes long, over the limit of {max_path} bytes",
            name.len()
        ));
    }
    for part in name.split(|b| *b == b'/') {
        if part.len() > MAX_COMPONENT_BYTES {
            return Err(format!(
                "{what} has a component of {} bytes (\"{}…\"), over the limit of {MAX_COMPONENT_BYTES} bytes",
                part.len(),
                show(&part[..32])
            ));
        }
    }
    Ok(())
}

/// Turns a stored entry name into its components, or says which rule it breaks. An empty
/// result is the root itself (`./`).
pub(crate) fn normalize(name: &[u8], max_path: usize) -> Result<Rel, String> {
    check_bytes("the name", name, max_path)?;
    if name.starts_with(b"/") {
        return Err("the path is absolute".into());
    }
    let mut rel = Vec::new();
    for part in name.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("the path leaves the archive's root through \"..\"".into()),
            _ => rel.push(part.to_vec()),
        }
    }
    Ok(rel)
}

/// Splits a link target into its parts (empty and `.` parts dropped, `..` kept).
fn target_parts(target: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    target
        .split(|b| *b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
}

/// Checks a symbolic link's target on its own: relative, and staying inside the root when
/// resolved lexically from the link's directory.
pub(crate) fn check_symlink_target(
    link: &Rel,
    target: &[u8],
    max_path: usize,
) -> Result<(), String> {
    check_bytes("the link target", target, max_path)?;
    if target.starts_with(b"/") {
        return Err(format!(
            "it is a symbolic link to the absolute path \"{}\"",
            show(target)
        ));
    }
    let mut depth = link.len().saturating_sub(1);
    for part in target_parts(target) {
        if part == b".." {
            if depth == 0 {
                return Err(format!(
                    "it is a symbolic link to \"{}\", which leaves the archive's root",
                    show(target)
                ));
            }
            depth -= 1;
        } else {
            depth += 1;
        }
    }
    Ok(())
}

/// What a path holds in the tree being built.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File,
    Link(Vec<u8>),
}

/// The kind of an entry offered to the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A directory.
    Dir,
    /// A regular file (hard links included: they are files of their own path).
    File,
    /// A symbolic link.
    Symlink,
}

/// The tree an archive builds, entry by entry, with the facts the end-of-archive rules need.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    nodes: HashMap<Vec<u8>, Node>,
    /// Symbolic links in archive order: path and target.
    links: Vec<(Rel, Vec<u8>)>,
    /// The first top-level name seen.
    first_top: Option<Vec<u8>>,
    /// More than one top-level name, or a top-level entry that is not a directory.
    no_single_top: bool,
}

impl Tree {
    /// Admits an entry: refuses it when it would go beneath a link or a file, or replace an
    /// earlier entry. Returns the directories it implies that did not exist yet (shallowest
    /// first), and whether the entry itself is new (a directory may be named twice).
    pub(crate) fn admit(
        &mut self,
        rel: &Rel,
        kind: Kind,
        link_target: Option<&[u8]>,
    ) -> Result<(Vec<usize>, bool), String> {
        let Some((last, parents)) = rel.split_last() else {
            return if kind == Kind::Dir {
                Ok((Vec::new(), false))
            } else {
                Err("it names the archive's root itself".into())
            };
        };
        let mut key = Vec::new();
        let mut checks = Vec::new();
        for (i, part) in parents.iter().enumerate() {
            if i > 0 {
                key.push(b'/');
            }
            key.extend_from_slice(part);
            match self.nodes.get(&key) {
                Some(Node::Dir) => {}
                Some(Node::Link(_)) => {
                    return Err(format!(
                        "it would be placed beneath \"{}\", a symbolic link in this archive",
                        show(&key)
                    ));
                }
                Some(Node::File) => {
                    return Err(format!(
                        "it would be placed beneath \"{}\", a file in this archive",
                        show(&key)
                    ));
                }
                None => checks.push((i + 1, key.clone())),
            }
        }
        if !key.is_empty() {
            key.push(b'/');
        }
        key.extend_from_slice(last);
        let new = match (self.nodes.get(&key), kind) {
            (None, _) => true,
            (Some(Node::Dir), Kind::Dir) => false,
            (Some(_), _) => {
                return Err(
                    "an earlier entry has the same path, and an archive may not replace its own entries"
                        .into(),
                );
            }
        };
        let implied = checks.iter().map(|(n, _)| *n).collect();
        for (_, dir) in checks {
            self.nodes.insert(dir, Node::Dir);
        }
        let node = match kind {
            Kind::Dir => Node::Dir,
            Kind::File => Node::File,
            Kind::Symlink => {
                let target = link_target.unwrap_or_default().to_vec();
                self.links.push((rel.clone(), target.clone()));
                Node::Link(target)
            }
        };
        if new {
            self.nodes.insert(key, node);
        }
        let top = &rel[0];
        match &self.first_top {
            None => self.first_top = Some(top.clone()),
            Some(t) if t != top => self.no_single_top = true,
            Some(_) => {}
        }
        if rel.len() == 1 && kind != Kind::Dir {
            self.no_single_top = true;
        }
        Ok((implied, new))
    }

    /// True when `rel` is a regular file (or a hard link to one) admitted earlier.
    pub(crate) fn is_file(&self, rel: &Rel) -> bool {
        self.nodes.get(&join(rel)) == Some(&Node::File)
    }

    /// The first top-level name seen.
    pub(crate) fn first_top(&self) -> Option<&[u8]> {
        self.first_top.as_deref()
    }

    /// The one top directory holding every entry, when there is one.
    pub(crate) fn single_top(&self) -> Option<&[u8]> {
        let top = self.first_top.as_deref()?;
        (!self.no_single_top && self.nodes.get(top) == Some(&Node::Dir)).then_some(top)
    }

    /// Directories of the tree (explicit or implied), the root not included.
    pub(crate) fn dirs(&self) -> u64 {
        self.nodes.values().filter(|n| **n == Node::Dir).count() as u64
    }

    /// The symbolic links, in archive order.
    pub(crate) fn links(&self) -> &[(Rel, Vec<u8>)] {
        &self.links
    }

    /// Resolves every link through the links of the whole tree and refuses one that ends
    /// outside the root, the root being `floor` levels down (1 when a top directory is
    /// stripped). Returns the offending link and the reason.
    pub(crate) fn check_links(&self, floor: usize) -> Result<(), (Rel, String)> {
        for (link, target) in &self.links {
            self.resolve(link, target, floor)
                .map_err(|reason| (link.clone(), reason))?;
        }
        Ok(())
    }

    fn resolve(&self, link: &Rel, target: &[u8], floor: usize) -> Result<(), String> {
        let leaves = || {
            if floor == 0 {
                format!(
                    "it is a symbolic link to \"{}\", which leaves the archive's root once the links it goes through are followed",
                    show(target)
                )
            } else {
                format!(
                    "it is a symbolic link to \"{}\", which leaves the top directory that is stripped",
                    show(target)
                )
            }
        };
        let mut stack: Vec<&[u8]> = link[..link.len().saturating_sub(1)]
            .iter()
            .map(Vec::as_slice)
            .collect();
        let mut queue: VecDeque<&[u8]> = target_parts(target).collect();
        let mut hops = 0;
        while let Some(part) = queue.pop_front() {
            if part == b".." {
                if stack.len() <= floor {
                    return Err(leaves());
                }
                stack.pop();
                continue;
            }
            stack.push(part);
            if let Some(Node::Link(next)) = self.nodes.get(&stack.join(&b'/')) {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(format!(
                        "it is a symbolic link to \"{}\", which goes through more than {MAX_LINK_HOPS} links",
                        show(target)
                    ));
                }
                stack.pop();
                for p in target_parts(next).rev() {
                    queue.push_front(p);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> Rel {
        normalize(s.as_bytes(), 4096).unwrap()
    }

    #[test]
    fn names_are_normalized_or_refused_with_the_rule() {
        assert_eq!(rel("./a//b/./c/"), rel("a/b/c"));
        assert!(rel("./").is_empty());
        assert!(normalize(b"../x", 4096).unwrap_err().contains("\"..\""));
        assert!(normalize(b"a/../x", 4096).unwrap_err().contains("\"..\""));
        assert!(normalize(b"/etc/x", 4096).unwrap_err().contains("absolute"));
        assert!(normalize(b"", 4096).unwrap_err().contains("empty"));
        assert!(normalize(b"a\0b", 4096).unwrap_err().contains("NUL"));
        assert!(
            normalize(&[b'a'; 300], 4096)
                .unwrap_err()
                .contains("300 bytes")
        );
        assert!(
            normalize(b"abcdef", 5)
                .unwrap_err()
                .contains("over the limit of 5")
        );
    }

    #[test]
    fn symlink_targets_resolve_lexically_from_the_links_directory() {
        assert!(check_symlink_target(&rel("lib.so"), b"lib.so.1", 4096).is_ok());
        assert!(check_symlink_target(&rel("a/b/l"), b"../../x", 4096).is_ok());
        assert!(check_symlink_target(&rel("a/b/l"), b"../../../x", 4096).is_err());
        assert!(check_symlink_target(&rel("l"), b"/etc", 4096).is_err());
        assert!(check_symlink_target(&rel("l"), b"a/../..", 4096).is_err());
    }

    #[test]
    fn entries_beneath_links_or_files_and_replacements_are_refused() {
        let mut t = Tree::default();
        t.admit(&rel("a"), Kind::Symlink, Some(b".")).unwrap();
        assert!(
            t.admit(&rel("a/b"), Kind::Symlink, Some(b".."))
                .unwrap_err()
                .contains("beneath \"a\"")
        );
        t.admit(&rel("f"), Kind::File, None).unwrap();
        assert!(
            t.admit(&rel("f/x"), Kind::File, None)
                .unwrap_err()
                .contains("a file")
        );
        assert!(
            t.admit(&rel("f"), Kind::File, None)
                .unwrap_err()
                .contains("same path")
        );
        assert!(t.admit(&rel("a"), Kind::Dir, None).is_err());
        let (implied, new) = t.admit(&rel("d/e/g"), Kind::File, None).unwrap();
        assert_eq!((implied, new), (vec![1, 2], true));
        assert_eq!(
            t.admit(&rel("d/e"), Kind::Dir, None).unwrap(),
            (vec![], false)
        );
    }

    #[test]
    fn links_are_resolved_through_other_links() {
        let mut t = Tree::default();
        t.admit(&rel("a/b/up"), Kind::Symlink, Some(b"..")).unwrap();
        // Lexically a/b/up/../../.. is the root; through the link it is one level above.
        t.admit(&rel("x"), Kind::Symlink, Some(b"a/b/up/../../.."))
            .unwrap();
        let (link, why) = t.check_links(0).unwrap_err();
        assert_eq!(link, rel("x"));
        assert!(why.contains("once the links"), "{why}");

        let mut loops = Tree::default();
        loops.admit(&rel("p"), Kind::Symlink, Some(b"q")).unwrap();
        loops.admit(&rel("q"), Kind::Symlink, Some(b"p")).unwrap();
        assert!(loops.check_links(0).unwrap_err().1.contains("more than 40"));
    }

    #[test]
    fn a_single_top_directory_is_found_and_stripping_bounds_links() {
        let mut t = Tree::default();
        t.admit(&rel("game/bin/x"), Kind::File, None).unwrap();
        t.admit(&rel("game/lib/l"), Kind::Symlink, Some(b"../bin/x"))
            .unwrap();
        assert_eq!(t.single_top(), Some(&b"game"[..]));
        assert!(t.check_links(1).is_ok());
        t.admit(&rel("game/up"), Kind::Symlink, Some(b"../game/bin/x"))
            .unwrap();
        assert!(t.check_links(0).is_ok());
        assert!(t.check_links(1).unwrap_err().1.contains("stripped"));
        t.admit(&rel("README"), Kind::File, None).unwrap();
        assert_eq!(t.single_top(), None);
    }
}
