//! A page of a list as a response (section 11): the items as a JSON array, and when more
//! follow an RFC 8288 `Link: <…>; rel="next"` to the next page, with the same filters.

use crate::domain::{CallFilter, CallStatus, List, Page};
use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One page, ready to answer.
pub struct Paged<T> {
    items: Vec<T>,
    next: Option<String>,
}

impl<T> Paged<T> {
    /// `limit` is the request's, kept in the next page's link.
    pub fn new(page: Page<T>, list: List, limit: usize) -> Self {
        let next = page.next.map(|after| next_link(list, limit, &list.cursor(after)));
        Self { items: page.items, next }
    }
}

/// The relative reference of the page after `cursor`: the list's path and filters.
fn next_link(list: List, limit: usize, cursor: &str) -> String {
    let (path, filter) = match list {
        List::Users => ("/users", CallFilter::default()),
        List::Rooms => ("/rooms", CallFilter::default()),
        List::Calls(filter) => ("/calls", filter),
    };
    let user = filter.user.map(|u| u.to_string());
    let mut query: Vec<(&str, &str)> = Vec::new();
    query.extend(user.as_deref().map(|u| ("userId", u)));
    query.extend(filter.status.map(|s| ("status", CallStatus::as_str(s))));
    let limit = limit.to_string();
    query.extend([("limit", limit.as_str()), ("cursor", cursor)]);
    let query = serde_urlencoded::to_string(&query).unwrap_or_default();
    format!("<{path}?{query}>; rel=\"next\"")
}

impl<T: Serialize> IntoResponse for Paged<T> {
    fn into_response(self) -> Response {
        let mut response = Json(self.items).into_response();
        if let Some(link) = self.next.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(header::LINK, link);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Position, UserId};

    #[test]
    fn the_next_link_keeps_the_path_and_filters() {
        let user = UserId::new();
        let list = List::Calls(CallFilter { user: Some(user), status: Some(CallStatus::Ended) });
        let after = Position { at: 5, id: uuid::Uuid::now_v7() };
        let page = Page { items: vec![1], next: Some(after) };
        let link = Paged::new(page, list, 2).next.expect("a next page");
        let cursor = list.cursor(after);
        assert_eq!(link, format!("</calls?userId={user}&status=ended&limit=2&cursor={cursor}>; rel=\"next\""));
        assert!(Paged::new(Page { items: vec![1], next: None }, List::Users, 2).next.is_none());
    }
}
