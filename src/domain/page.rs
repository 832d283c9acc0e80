//! Pages of a list (contract section 11): every list is ordered by a time and then by id,
//! and a page ends at a position from which the next one starts. Positions survive
//! inserts and deletions, so a walk visits every item that existed throughout it once.

use super::{CallFilter, CallStatus, Timestamp};
use uuid::Uuid;

/// Where an item sits in its list: its time (creation, or a call's start) in ms, then its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub at: i64,
    pub id: Uuid,
}

impl Position {
    pub fn new(at: Timestamp, id: Uuid) -> Self {
        Self { at: at.millis(), id }
    }
}

/// The lists of the contract. Users and rooms are oldest first, calls newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    Users,
    Rooms,
    Calls(CallFilter),
}

/// Which way a list runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    OldestFirst,
    NewestFirst,
}

impl List {
    pub fn order(self) -> Order {
        match self {
            Self::Users | Self::Rooms => Order::OldestFirst,
            Self::Calls(_) => Order::NewestFirst,
        }
    }

    /// What a cursor is bound to: the list and its filters.
    fn tag(self) -> String {
        match self {
            Self::Users => "users".into(),
            Self::Rooms => "rooms".into(),
            Self::Calls(CallFilter { user, status }) => format!(
                "calls|{}|{}",
                user.map(|u| u.to_string()).unwrap_or_default(),
                status.map(CallStatus::as_str).unwrap_or_default()
            ),
        }
    }

    /// An opaque cursor for the page after `after`: the position and a check binding it to
    /// this list, so a cursor of another list, or one made up, is refused rather than
    /// silently walking from somewhere else.
    pub fn cursor(self, after: Position) -> String {
        let body = format!("{:x}.{}", after.at, after.id.simple());
        format!("{body}.{:016x}", check(&self.tag(), &body))
    }

    /// The position a cursor of this list stands for; `None` if this list did not make it.
    pub fn position(self, cursor: &str) -> Option<Position> {
        let (body, sum) = cursor.rsplit_once('.')?;
        let (at, id) = body.split_once('.')?;
        let lower_hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !lower_hex(at) || !lower_hex(sum) || u64::from_str_radix(sum, 16).ok()? != check(&self.tag(), body) {
            return None;
        }
        let id = Uuid::try_parse(id).ok().filter(|u| u.simple().to_string() == id)?;
        Some(Position { at: i64::from_str_radix(at, 16).ok()?, id })
    }
}

/// FNV-1a over the list's tag and the cursor: stable across builds and replicas (unlike
/// std's hasher), enough to tell a cursor we made from one we did not.
fn check(tag: &str, body: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tag.bytes().chain([0]).chain(body.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// What a list request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// Start after this position (`None`: from the start).
    pub after: Option<Position>,
    pub limit: usize,
}

/// One page: its items in list order, and where the next page starts when more follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Position>,
}

impl<T> Page<T> {
    /// The page of `limit` items out of `items` fetched one beyond it.
    pub fn of(mut items: Vec<T>, limit: usize, position: impl Fn(&T) -> Position) -> Self {
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(position)
        } else {
            None
        };
        Self { items, next }
    }
}

/// Positions of the three resources in their lists.
pub trait Listed {
    fn position(&self) -> Position;
}

impl Listed for super::User {
    fn position(&self) -> Position {
        Position::new(self.created_at, self.id.0)
    }
}

impl Listed for super::Room {
    fn position(&self) -> Position {
        Position::new(self.created_at, self.id.0)
    }
}

impl Listed for super::Call {
    fn position(&self) -> Position {
        Position::new(self.start_time, self.id.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_valid_only_for_the_list_that_made_it() {
        let at = Position { at: 1_795_809_271_123, id: Uuid::now_v7() };
        let ended = List::Calls(CallFilter { user: None, status: Some(CallStatus::Ended) });
        let cursor = List::Users.cursor(at);
        assert_eq!(List::Users.position(&cursor), Some(at));
        assert_eq!(List::Rooms.position(&cursor), None);
        assert_eq!(ended.position(&ended.cursor(at)), Some(at));
        assert_eq!(List::Calls(CallFilter::default()).position(&ended.cursor(at)), None);
        for made_up in ["", "garbage", "1.2.3", &cursor.to_uppercase(), &cursor.replacen('1', "2", 1)] {
            assert_eq!(List::Users.position(made_up), None, "{made_up}");
        }
    }

    #[test]
    fn a_page_says_where_the_next_starts_only_when_more_follow() {
        let pos = |n: &i64| Position { at: *n, id: Uuid::nil() };
        assert_eq!(Page::of(vec![1, 2, 3], 2, pos), Page { items: vec![1, 2], next: Some(pos(&2)) });
        assert_eq!(Page::of(vec![1, 2], 2, pos), Page { items: vec![1, 2], next: None });
    }
}
