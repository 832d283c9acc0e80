//! Retention, erasure and pages (section 11 of the contract): every list walked to its end
//! through its `Link` headers, a user erased everywhere (their calls ended first, their
//! tokens and sockets shut out), ended calls and idle rooms deleted after their retention
//! with no key left behind, and a store holding corrupt documents still serving the rest.
//! On the embedded store and on two replicas sharing a Redis (requests and pages alternate
//! between them; a client on each listens), some also with `AUTH=token` (a server token).

use crate::lifecycle::{post_webhook, webhook_body};
use crate::support::{
    AUTH_SECRET, Api, Cluster, Key, Mode, RedisServer, SioClient, TestApp, WAIT, assert_problem, cli,
    eventually_within, id, keyspace, sign_webhook, until_ended,
};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

enum Backend {
    Memory,
    /// Two replicas on one Redis.
    Redis,
}

/// The Redis namespace of every replica here: keys live under `{bounded}:`.
const NS: &str = "bounded";

/// How long after its due time a deletion by retention may take (10 s), with a margin
/// for the test's own requests.
const RETENTION_BOUND: Duration = Duration::from_secs(15);

/// Replicas with a listening client each; with `--auth token` among the flags, requests
/// and clients act with a server token.
struct Fixture {
    apis: Vec<Api>,
    clients: Vec<SioClient>,
    redis: Option<RedisServer>,
    _apps: Vec<TestApp>,
}

impl Fixture {
    async fn new(backend: Backend, flags: &[&str]) -> Self {
        let Cluster { apis, clients, redis, apps } = Cluster::start(matches!(backend, Backend::Redis), NS, flags).await;
        Self { apis, clients, redis, _apps: apps }
    }

    /// The replica that serves request `n` (they alternate).
    fn api(&self, n: usize) -> &Api {
        &self.apis[n % self.apis.len()]
    }

    fn base(&self, n: usize) -> &str {
        self.api(n).base()
    }

    fn redis_port(&self) -> u16 {
        self.redis.as_ref().expect("a Redis fixture").port
    }

    /// Every event heard since the last call, the same on every replica's client.
    async fn heard(&mut self) -> Vec<(String, Value)> {
        crate::support::heard_alike(&self.apis[0], &mut self.clients).await
    }

    async fn user(&self, n: usize, name: &str) -> String {
        self.api(n).user(name).await
    }

    /// Registers `name` on replica `n`: its id, its user token (with `AUTH=token`) and an
    /// API acting with that token on the other replica.
    async fn person(&self, n: usize, name: &str) -> (String, String, Api) {
        let (status, user) = self.api(n).post("/users", json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        let token = user["token"].as_str().expect("a token with AUTH=token").to_owned();
        (text(&user["id"]).to_owned(), token.clone(), self.api(n + 1).bearer(&token))
    }

    async fn call(&self, n: usize, from: &str, to: &str) -> Value {
        let (status, call) = self.api(n).post("/calls", json!({ "fromUserId": from, "toUserId": to })).await;
        assert_eq!(status, StatusCode::CREATED, "{call}");
        call
    }

    /// `action` (`end`, `accept`, `decline`) of a call by `user`, answered 200.
    async fn act(&self, n: usize, call: &Value, action: &str, user: &str) -> Value {
        let path = format!("/calls/{}/{action}", id(call));
        let (status, body) = self.api(n).post(&path, json!({ "userId": user })).await;
        assert_eq!(status, StatusCode::OK, "{action}: {body}");
        body
    }

    async fn room(&self, n: usize, name: &str) -> Value {
        let (status, room) = self.api(n).post("/rooms", json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "{room}");
        room
    }

    async fn join(&self, n: usize, room: &Value, user: &str) -> Value {
        let (status, joined) = self.api(n).post(&format!("/rooms/{}/join", id(room)), json!({ "userId": user })).await;
        assert_eq!(status, StatusCode::OK, "{joined}");
        joined
    }

    /// `DELETE /users/:id` through `api`: the status and the raw body.
    async fn erase_with(api: &Api, user: &str) -> (StatusCode, String) {
        let res = api.raw(Method::DELETE, &format!("/users/{user}")).send().await.expect("sent");
        let status = res.status();
        (status, res.text().await.expect("a body"))
    }

    /// Erases `user` on replica `n`, which must answer 204 with no body.
    async fn erase(&self, n: usize, user: &str) {
        let (status, body) = Self::erase_with(self.api(n), user).await;
        assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""), "erasing {user}");
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|item| id(item).to_owned()).collect()
}

fn error_fields(body: &Value) -> Vec<String> {
    body["errors"].as_array().into_iter().flatten().map(|e| text(&e["field"]).to_owned()).collect()
}

fn millis(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text(v)).expect("an ISO time").timestamp_millis()
}

// ---------------------------------------------------------------------------------------
// Pages

/// One page: its items and the target of its `rel="next"` link, resolved against the
/// page's own URL (`path`), which must keep the path and be a relative reference.
async fn page(api: &Api, path: &str) -> (Vec<Value>, Option<String>) {
    let res = api.raw(Method::GET, path).send().await.expect("sent");
    let status = res.status();
    let links: Vec<String> =
        res.headers().get_all("link").iter().map(|v| v.to_str().expect("an ASCII Link").to_owned()).collect();
    let body: Value = res.json().await.expect("a JSON body");
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    let items = body.as_array().unwrap_or_else(|| panic!("{path}: the body stays a JSON array: {body}")).clone();
    let mut next: Vec<String> = links.iter().flat_map(|l| next_targets(l)).collect();
    assert!(next.len() <= 1, "{path}: one next link at most: {links:?}");
    (items, next.pop().map(|target| resolve(path, &target)))
}

/// The targets of the `rel="next"` links of one `Link` header value.
fn next_targets(header: &str) -> Vec<String> {
    header
        .split('<')
        .skip(1)
        .filter_map(|link| {
            let (target, params) = link.split_once('>')?;
            let params = params.split(',').next().unwrap_or_default().to_ascii_lowercase();
            let next = params.split(';').any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
            next.then(|| target.to_owned())
        })
        .collect()
}

/// `target` resolved against the request `path`: the path and query to request next.
fn resolve(path: &str, target: &str) -> String {
    assert!(!target.contains("://") && !target.starts_with("//"), "a relative reference, not {target}");
    let base = Url::parse("http://replica.invalid").and_then(|b| b.join(path)).expect("a URL");
    let url = base.join(target).expect("a URL reference");
    assert_eq!(url.path(), base.path(), "the next link keeps the path: {target}");
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

fn query(path: &str) -> HashMap<String, String> {
    let url = Url::parse("http://replica.invalid").and_then(|b| b.join(path)).expect("a URL");
    url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// A walk through a list's pages, following each `Link` as given.
struct Walk {
    next: Option<String>,
    filters: HashMap<String, String>,
    pages: usize,
}

impl Walk {
    fn new(first: &str) -> Self {
        Self { next: Some(first.to_owned()), filters: query(first), pages: 0 }
    }

    /// The next page's items (from replica `n`), or `None` once the last page was read.
    async fn page(&mut self, f: &Fixture, n: usize) -> Option<Vec<Value>> {
        let path = self.next.take()?;
        self.pages += 1;
        assert!(self.pages <= 1000, "the walk does not end: {path}");
        let (items, next) = page(f.api(n), &path).await;
        if let Some(limit) = self.filters.get("limit").and_then(|l| l.parse::<usize>().ok()) {
            assert!(items.len() <= limit, "{path}: {} items, limit {limit}", items.len());
        }
        if let Some(next) = &next {
            let next_query = query(next);
            for (key, value) in &self.filters {
                if key != "cursor" {
                    assert_eq!(next_query.get(key), Some(value), "the next link keeps `{key}`: {next}");
                }
            }
            assert!(next_query.get("cursor").is_some_and(|c| !c.is_empty()), "a cursor: {next}");
        }
        self.next = next;
        Some(items)
    }

    /// The ids of the next pages until at least `n` items were read.
    async fn at_least(&mut self, f: &Fixture, n: usize) -> Vec<String> {
        let mut seen = Vec::new();
        while seen.len() < n {
            seen.extend(ids(&self.page(f, self.pages).await.expect("more pages")));
        }
        seen
    }

    /// Every remaining page, each from the next replica in turn.
    async fn rest(&mut self, f: &Fixture) -> Vec<Vec<Value>> {
        let mut pages = Vec::new();
        while let Some(items) = self.page(f, self.pages).await {
            pages.push(items);
        }
        pages
    }
}

/// Walks `first` to its end on a list that does not change meanwhile: every item once, in
/// `expected` order, the same as one page of everything, and no page without items (a
/// `next` link means more items follow).
async fn walk_exactly(f: &Fixture, first: &str, expected: &[String]) {
    let pages = Walk::new(first).rest(f).await;
    assert!(pages.iter().all(|p| !p.is_empty()), "{first}: an empty page: {pages:?}");
    let walked: Vec<String> = pages.iter().flat_map(|p| ids(p)).collect();
    assert_eq!(walked, expected, "{first}: every item once, in order");
    let (one, _) = page(f.api(0), &unpaged(first)).await;
    assert_eq!(ids(&one), expected, "{first}: the walk equals the whole list");
}

/// `path` with `limit=1000` in place of its limit.
fn unpaged(path: &str) -> String {
    let (base, _) = path.split_once('?').unwrap_or((path, ""));
    let mut pairs: Vec<(String, String)> = query(path).into_iter().filter(|(k, _)| k != "limit").collect();
    pairs.push(("limit".into(), "1000".into()));
    format!("{base}?{}", serde_urlencoded::to_string(&pairs).expect("a query"))
}

/// Every list walked two items at a time (pages alternating between replicas) visits each
/// item once in the list's order and ends with a page that has no `next` link; the link
/// keeps `limit` and the filters. Breaks it: a missing or absolute link, a link that drops
/// `userId` or `status`, an offset or cursor that skips or repeats, a cursor only the
/// replica that made it understands, a `next` link on the last page.
async fn every_list_walks_to_its_end_once_in_order(f: Fixture) {
    let mut users = Vec::new();
    for n in 0..5 {
        users.push(f.user(n, &format!("user-{n}")).await);
    }
    let mut rooms = Vec::new();
    for n in 0..4 {
        rooms.push(id(&f.room(n, &format!("room-{n}")).await).to_owned());
    }
    let pairs = [(0, 1), (1, 2), (0, 2), (3, 0), (2, 4), (0, 4), (4, 0)];
    let mut calls = Vec::new();
    for (n, (from, to)) in pairs.into_iter().enumerate() {
        calls.push(f.call(n, &users[from], &users[to]).await);
    }
    for n in [0, 2, 4, 6] {
        f.act(n, &calls[n], "end", text(&calls[n]["fromUserId"])).await;
    }
    let newest_first = |keep: &dyn Fn(&Value) -> bool| -> Vec<String> {
        calls.iter().rev().filter(|c| keep(c)).map(|c| id(c).to_owned()).collect()
    };
    let x = users[0].clone();
    let involves_x = |c: &Value| c["fromUserId"] == x.as_str() || c["toUserId"] == x.as_str();
    let ended = |c: &Value| [0, 2, 4, 6].iter().any(|&n| calls[n]["id"] == c["id"]);

    walk_exactly(&f, "/users?limit=2", &users).await;
    // Four rooms in pages of two: the second page is the last.
    walk_exactly(&f, "/rooms?limit=2", &rooms).await;
    walk_exactly(&f, "/calls?limit=2", &newest_first(&|_| true)).await;
    walk_exactly(&f, &format!("/calls?userId={x}&limit=2"), &newest_first(&involves_x)).await;
    walk_exactly(&f, "/calls?status=ended&limit=2", &newest_first(&ended)).await;
    walk_exactly(&f, "/calls?limit=2&status=initiated", &newest_first(&|c| !ended(c))).await;
    walk_exactly(&f, &format!("/calls?status=ended&userId={x}&limit=1"), &newest_first(&|c| involves_x(c) && ended(c)))
        .await;
    walk_exactly(&f, &format!("/calls?userId={x}&limit=5"), &newest_first(&involves_x)).await;
    for list in ["/users", "/rooms", "/calls"] {
        let (_, next) = page(f.api(1), &format!("{list}?limit=1000")).await;
        assert_eq!(next, None, "{list}: everything on one page, no next link");
    }
}

/// Cursors the server did not make are refused as a `cursor` validation error; `limit`
/// keeps its rules with a cursor; the default limit is 100 and pages too. Breaks it: a
/// cursor decoded leniently (garbage read as "from the start"), a cursor of one list
/// accepted by another, a cursor that bypasses the limit check.
async fn cursors_and_limits_are_checked(f: Fixture) {
    let mut users = Vec::new();
    for n in 0..3 {
        users.push(f.user(n, &format!("user-{n}")).await);
    }
    for n in 0..3 {
        f.room(n, &format!("room-{n}")).await;
    }
    for n in 0..3 {
        f.call(n, &users[n], &users[(n + 1) % 3]).await;
    }
    let cursor_of = |next: Option<String>| query(&next.expect("a next link"))["cursor"].clone();
    let users_cursor = cursor_of(page(f.api(0), "/users?limit=1").await.1);
    let rooms_cursor = cursor_of(page(f.api(1), "/rooms?limit=1").await.1);
    let calls_cursor = cursor_of(page(f.api(0), "/calls?limit=1").await.1);
    let enc = |c: &str| serde_urlencoded::to_string([("cursor", c)]).expect("a query");
    let x = &users[0];
    let refused = [
        "/users?cursor=garbage".to_owned(),
        "/rooms?limit=2&cursor=garbage".to_owned(),
        "/calls?cursor=garbage".to_owned(),
        format!("/calls?userId={x}&status=initiated&limit=1&cursor=garbage"),
        format!("/rooms?limit=1&{}", enc(&users_cursor)),
        format!("/users?limit=1&{}", enc(&rooms_cursor)),
        format!("/users?limit=1&{}", enc(&calls_cursor)),
    ];
    for (n, path) in refused.iter().enumerate() {
        let (status, body) = f.api(n).get(path).await;
        assert_problem(status, &body, 422, "validation_failed");
        assert_eq!(error_fields(&body), vec!["cursor"], "{path}: {body}");
    }
    for bad in ["0", "1001", "abc", "-1", "1.5"] {
        for (list, cursor) in [("/users", &users_cursor), ("/rooms", &rooms_cursor), ("/calls", &calls_cursor)] {
            let (status, body) = f.api(1).get(&format!("{list}?limit={bad}&{}", enc(cursor))).await;
            assert_problem(status, &body, 422, "validation_failed");
            assert_eq!(error_fields(&body), vec!["limit"], "{list}?limit={bad} with a valid cursor: {body}");
        }
    }
    // The cursors themselves were fine: they still work, on either replica.
    let (rest, _) = page(f.api(1), &format!("/users?limit=1&{}", enc(&users_cursor))).await;
    assert_eq!(ids(&rest), users[1..2]);

    // Without `limit`, pages of 100.
    for n in 0..101 {
        f.user(n, &format!("crowd-{n}")).await;
    }
    let (first, next) = page(f.api(0), "/users").await;
    assert_eq!(first.len(), 100, "the default limit");
    let mut walk = Walk::new(&next.expect("more users follow the first 100"));
    let mut all = ids(&first);
    all.extend(walk.rest(&f).await.iter().flat_map(|p| ids(p)));
    let (everyone, _) = page(f.api(1), "/users?limit=1000").await;
    assert_eq!((all.len(), all), (104, ids(&everyone)));
}

/// A walk while items are added, erased and (calls) deleted by retention between its pages
/// visits every item that existed throughout exactly once, in order, and nothing twice.
/// Breaks it: offsets (an erased user or a deleted call before the cursor shifts the rest,
/// skipping one; a new call at the head of the newest-first list shifts it, repeating
/// one), ordering rooms by their last activity (a join moves one to the end).
async fn a_walk_racing_changes_sees_what_stayed_once_in_order(f: Fixture) {
    let mut users = Vec::new();
    for n in 0..8 {
        users.push(f.user(n, &format!("user-{n}")).await);
    }
    let mut rooms = Vec::new();
    for n in 0..6 {
        rooms.push(f.room(n, &format!("room-{n}")).await);
    }
    let (a, b) = (users[0].clone(), users[2].clone());
    let mut calls = Vec::new();
    for n in 0..10 {
        calls.push(f.call(n, &a, &b).await);
    }
    let mut user_walk = Walk::new("/users?limit=2");
    let mut room_walk = Walk::new("/rooms?limit=2");
    let mut call_walk = Walk::new("/calls?limit=3");
    let mut ringing_walk = Walk::new(&format!("/calls?userId={a}&status=initiated&limit=2"));
    let newest: Vec<String> = calls.iter().rev().map(|c| id(c).to_owned()).collect();
    let seen_users = user_walk.at_least(&f, 4).await;
    assert_eq!(seen_users, users[..seen_users.len()]);
    let seen_rooms = room_walk.at_least(&f, 2).await;
    assert_eq!(seen_rooms, ids(&rooms[..seen_rooms.len()]));
    let seen_calls = call_walk.at_least(&f, 3).await;
    assert_eq!(seen_calls, newest[..seen_calls.len()]);
    let seen_ringing = ringing_walk.at_least(&f, 2).await;
    assert_eq!(seen_ringing, newest[..seen_ringing.len()]);

    // Meanwhile: users already passed are erased and new ones come; a room not yet visited
    // is joined and a new one made; the calls passed end and are deleted by retention, one
    // more ends ahead of the cursor, and a new call starts.
    f.erase(0, &users[1]).await;
    f.erase(1, &users[3]).await;
    let new_users = vec![f.user(0, "late-0").await, f.user(1, "late-1").await];
    f.join(0, &rooms[4], &a).await;
    let new_room = id(&f.room(1, "late-room").await).to_owned();
    for (n, call) in seen_calls.iter().enumerate() {
        f.act(n, &json!({ "id": call }), "end", &a).await;
    }
    let ahead = id(&calls[2]).to_owned();
    f.act(0, &calls[2], "end", &b).await;
    let new_call = id(&f.call(1, &b, &a).await).to_owned();
    for call in &seen_calls {
        let path = format!("/calls/{call}");
        eventually_within(RETENTION_BOUND, "an ended call deleted by retention", || async {
            f.api(0).get(&path).await.0 == StatusCode::NOT_FOUND
        })
        .await;
    }

    let rest = |pages: Vec<Vec<Value>>| -> Vec<String> { pages.iter().flat_map(|p| ids(p)).collect() };
    let users_rest = rest(user_walk.rest(&f).await);
    check_walk("users", &seen_users, &users_rest, &users[seen_users.len()..], &new_users);
    let rooms_rest = rest(room_walk.rest(&f).await);
    check_walk("rooms", &seen_rooms, &rooms_rest, &ids(&rooms[seen_rooms.len()..]), &[new_room]);
    let may = [new_call, ahead.clone()];
    let stayed = |seen: &[String]| -> Vec<String> {
        newest.iter().filter(|c| !seen.contains(c) && !seen_calls.contains(c) && **c != ahead).cloned().collect()
    };
    let calls_rest = rest(call_walk.rest(&f).await);
    check_walk("calls", &seen_calls, &calls_rest, &stayed(&seen_calls), &may);
    let ringing_rest = rest(ringing_walk.rest(&f).await);
    check_walk("ringing calls", &seen_ringing, &ringing_rest, &stayed(&seen_ringing), &may);
}

/// What a racing walk visited after its first pages (`rest`): every item of `stayed` once
/// and in order, only items of `stayed` or `may` (those added or ended meanwhile), and
/// nothing visited twice.
fn check_walk(list: &str, before: &[String], rest: &[String], stayed: &[String], may: &[String]) {
    let mut visited: Vec<&String> = before.iter().chain(rest).collect();
    let all = visited.len();
    visited.sort();
    visited.dedup();
    assert_eq!(visited.len(), all, "{list}: an item visited twice: {before:?} then {rest:?}");
    let kept: Vec<&String> = rest.iter().filter(|i| stayed.contains(i)).collect();
    assert_eq!(kept, stayed.iter().collect::<Vec<_>>(), "{list}: what stayed, once, in order: {rest:?}");
    for item in rest {
        assert!(stayed.contains(item) || may.contains(item), "{list}: {item} should not be visited: {rest:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Erasure

/// Erasing a user ends their ringing and accepted calls (as an end by them), then
/// announces `user.deleted`; the user is gone from every list and room, ended calls keep
/// their id, and registering again makes a new user. Breaks it: calls left ringing, ended
/// without `endedBy`, or ended after the announcement; the user left in `GET /users` or a
/// room's participants; a soft delete that still answers; an erased user erasable again.
async fn erasing_a_user_ends_their_calls_and_removes_them(mut f: Fixture) {
    let (ana, ben, cat) = (f.user(0, "Ana").await, f.user(1, "Ben").await, f.user(0, "Cat").await);
    let room = f.room(1, "Stand-up").await;
    f.join(0, &room, &ana).await;
    f.join(1, &room, &ben).await;
    let over = f.call(0, &ana, &ben).await;
    let over = f.act(1, &over, "end", &ben).await;
    let ringing = f.call(1, &ben, &ana).await;
    let talking = f.call(0, &ana, &cat).await;
    f.act(1, &talking, "accept", &cat).await;
    let others = f.call(0, &ben, &cat).await;
    f.heard().await;

    f.erase(1, &ana).await;
    let heard = f.heard().await;
    let (last, first) = heard.split_last().expect("events");
    assert_eq!(last, &("user.deleted".to_owned(), json!({ "data": { "id": ana } })), "{heard:?}");
    let mut ended: Vec<&(String, Value)> = first.iter().collect();
    ended.sort_by_key(|(_, arg)| text(&arg["data"]["callId"]).to_owned());
    let mut expected =
        [ringing.clone(), talking.clone()].map(|c| ("call.ended".to_owned(), json!({ "data": { "callId": c["id"] } })));
    expected.sort_by_key(|(_, arg)| text(&arg["data"]["callId"]).to_owned());
    assert_eq!(ended, expected.iter().collect::<Vec<_>>(), "the open calls ended first, each once: {heard:?}");

    for (call, reason) in [(&ringing, "cancelled"), (&talking, "completed")] {
        let (status, now) = f.api(0).get(&format!("/calls/{}", id(call))).await;
        assert_eq!(status, StatusCode::OK, "{now}");
        assert_eq!(
            (now["status"].as_str(), now["endReason"].as_str(), now["endedBy"].as_str()),
            (Some("ended"), Some(reason), Some(ana.as_str())),
            "{now}"
        );
        assert_eq!((&now["fromUserId"], &now["toUserId"]), (&call["fromUserId"], &call["toUserId"]));
    }
    let (_, kept) = f.api(1).get(&format!("/calls/{}", id(&over))).await;
    assert_eq!(kept, over, "an ended call is left as it was, naming the erased user");
    let (_, untouched) = f.api(0).get(&format!("/calls/{}", id(&others))).await;
    assert_eq!(untouched["status"], "initiated", "calls of others go on");

    for n in 0..2 {
        let (status, body) = f.api(n).get(&format!("/users/{ana}")).await;
        assert_problem(status, &body, 404, "user_not_found");
    }
    let (status, body) = f.api(0).send(Method::DELETE, &format!("/users/{ana}"), None).await;
    assert_problem(status, &body, 404, "user_not_found");
    for unknown in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_owned()] {
        let (status, body) = f.api(1).send(Method::DELETE, &format!("/users/{unknown}"), None).await;
        assert_problem(status, &body, 404, "user_not_found");
    }
    let (_, everyone) = f.api(1).get("/users?limit=1000").await;
    let everyone = ids(everyone.as_array().expect("a list"));
    assert!(!everyone.contains(&ana) && everyone.contains(&ben) && everyone.contains(&cat), "{everyone:?}");
    let (_, now) = f.api(0).get(&format!("/rooms/{}", id(&room))).await;
    assert_eq!(now["participants"], json!([ben]), "{now}");
    let (_, listed) = f.api(1).get("/rooms").await;
    assert_eq!(listed[0]["participants"], json!([ben]), "{listed}");

    let (status, body) = f.api(0).post("/calls", json!({ "fromUserId": ben, "toUserId": ana })).await;
    assert_problem(status, &body, 404, "user_not_found");
    let (status, body) = f.api(1).post(&format!("/rooms/{}/join", id(&room)), json!({ "userId": ana })).await;
    assert_problem(status, &body, 404, "user_not_found");
    let (status, body) = f.api(0).post("/livekit/token", json!({ "roomName": room["roomName"], "userId": ana })).await;
    assert_problem(status, &body, 404, "user_not_found");
    assert!(f.heard().await.is_empty(), "refused requests announce nothing");

    let again = f.user(1, "Ana").await;
    assert_ne!(again, ana, "registering again makes a new user");
}

/// `AUTH=token`: only the user or a server may erase; once erased, within 1 s, the user's
/// tokens are refused on every replica and their sockets on every replica are closed, and a
/// new connection is refused. Breaks it: any user erasing another; a replica that trusts a
/// token's signature without the user existing, or caches users; sockets left open.
async fn only_the_user_may_erase_and_then_is_shut_out(mut f: Fixture) {
    let (ana, ana_token, ana_api) = f.person(0, "Ana").await;
    let (ben, _, ben_api) = f.person(1, "Ben").await;
    let mut sockets = Vec::new();
    for n in 0..2 {
        let auth = Some(json!({ "token": ana_token }));
        sockets.push(SioClient::connect_with(f.base(n), Mode::Websocket, auth).await);
    }
    let (status, body) = ben_api.send(Method::DELETE, &format!("/users/{ana}"), None).await;
    assert_problem(status, &body, 403, "forbidden");
    let anonymous = Api::new(f.base(0));
    let (status, body) = anonymous.send(Method::DELETE, &format!("/users/{ana}"), None).await;
    assert_problem(status, &body, 401, "unauthorized");
    assert_eq!(ana_api.get("/users").await.0, StatusCode::OK, "refused erasures changed nothing");
    f.heard().await;

    // Ana's token acts on replica 1; it is then checked on replica 0 (the other one).
    let (status, body) = Fixture::erase_with(&ana_api, &ana).await;
    let erased_at = Instant::now();
    assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
    let elsewhere = f.api(0).bearer(&ana_token);
    eventually_within(Duration::from_secs(1), "the erased user's token refused on the other replica", || async {
        elsewhere.get("/users").await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    let deadline = erased_at + Duration::from_secs(1);
    for (n, socket) in sockets.iter_mut().enumerate() {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, socket.next_line_within(WAIT)).await;
            let line = line.unwrap_or_else(|_| panic!("replica {n}: the erased user's socket still open after 1 s"));
            if line["type"] == "disconnect" {
                break;
            }
            assert_eq!(line["type"], "event", "replica {n}: {line}");
        }
    }
    let exp = chrono::Utc::now().timestamp() + 600;
    let claims = json!({ "sub": ana, "exp": exp });
    let key = jsonwebtoken::EncodingKey::from_secret(AUTH_SECRET.as_bytes());
    let minted = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("signs");
    for n in 0..2 {
        for token in [&ana_token, &minted] {
            let (status, body) = f.api(n).bearer(token).get("/rooms").await;
            assert_problem(status, &body, 401, "unauthorized");
            assert_eq!(SioClient::refused(f.base(n), Some(json!({ "token": token }))).await, "unauthorized");
        }
    }
    assert_eq!(f.heard().await, vec![("user.deleted".to_owned(), json!({ "data": { "id": ana } }))]);
    assert_eq!(ben_api.get("/users").await.0, StatusCode::OK, "other users' tokens still work");

    // A server token may erase anyone.
    let (status, body) = Fixture::erase_with(f.api(1), &ben).await;
    assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
    eventually_within(Duration::from_secs(1), "the erased user's token refused", || async {
        ben_api.get("/users").await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
}

/// An erasure racing a call to the erased user, from the other replica, twenty times (the
/// user also has a ringing call, so the erasure has a call to end first, and the two
/// requests start up to 9 ms apart, either first): the call is refused (404) or, if it was
/// made, it has ended by the time both answered (ended by the erased user, announced before
/// `user.deleted`); never a call left ringing to a user who is gone. Breaks it: ending the
/// user's calls and deleting the user in two steps with no guard between them (a call
/// stored in between is never ended), a deletion that does not check for open calls.
async fn an_erasure_racing_a_call_leaves_no_open_call(mut f: Fixture) {
    let (ana, cat) = (f.user(0, "Ana").await, f.user(1, "Cat").await);
    let mut made = Vec::new();
    let mut callees = Vec::new();
    for n in 0..20 {
        let ben = f.user(n, &format!("Ben-{n}")).await;
        let ringing = f.call(n, &cat, &ben).await;
        let (eraser, caller) = (f.api(n).clone(), f.api(n + 1).clone());
        let path = format!("/users/{ben}");
        let body = json!({ "fromUserId": ana, "toUserId": ben });
        // Not a wait for anything: a different interleaving each try.
        let stagger = Duration::from_millis(n as u64 / 2);
        let (erase_after, call_after) = if n % 2 == 0 { (stagger, Duration::ZERO) } else { (Duration::ZERO, stagger) };
        let (erased, (status, call)) = tokio::join!(
            async move {
                tokio::time::sleep(erase_after).await;
                eraser.raw(Method::DELETE, &path).send().await.expect("sent").status()
            },
            async move {
                tokio::time::sleep(call_after).await;
                caller.post("/calls", body).await
            }
        );
        assert_eq!(erased, StatusCode::NO_CONTENT, "try {n}");
        let (_, before) = f.api(n + 1).get(&format!("/calls/{}", id(&ringing))).await;
        let ended_first = (before["endReason"].as_str(), before["endedBy"].as_str());
        assert_eq!(ended_first, (Some("cancelled"), Some(ben.as_str())), "try {n}: the open call ended: {before}");
        if status == StatusCode::CREATED {
            let (_, now) = f.api(n).get(&format!("/calls/{}", id(&call))).await;
            assert_eq!(
                (now["status"].as_str(), now["endReason"].as_str(), now["endedBy"].as_str()),
                (Some("ended"), Some("cancelled"), Some(ben.as_str())),
                "try {n}: a call made while its callee was erased: {now}"
            );
            made.push((id(&call).to_owned(), ben.clone()));
        } else {
            assert_problem(status, &call, 404, "user_not_found");
        }
        callees.push(ben);
    }
    let heard = f.heard().await;
    let position = |name: &str, key: &str, value: &str| {
        let found = heard.iter().position(|(n, arg)| n == name && arg["data"][key] == value);
        found.unwrap_or_else(|| panic!("no {name} of {value}: {heard:?}"))
    };
    for ben in &callees {
        let deleted = heard.iter().filter(|(n, arg)| n == "user.deleted" && arg["data"]["id"] == ben.as_str());
        assert_eq!(deleted.count(), 1, "one user.deleted for {ben}");
    }
    for (call, ben) in &made {
        let started = position("call.started", "id", call);
        let ended = position("call.ended", "callId", call);
        let deleted = position("user.deleted", "id", ben);
        assert!(started < ended && ended < deleted, "{call}: started, ended, then its callee deleted: {heard:?}");
    }
    let (_, open) = f.api(0).get("/calls?status=initiated").await;
    assert_eq!(open, json!([]), "no call left ringing");
}

// ---------------------------------------------------------------------------------------
// Retention

/// With 1 s of retention, ended calls and an idle room are deleted (404, out of every
/// list, their `roomName` unknown), silently, while a ringing call, an accepted call and a
/// room kept active by joins stay; once the joins stop, that room goes too, not before 1 s
/// after its last join. Breaks it: deleting calls that have not ended, deleting rooms by
/// creation time only, deleting early, emitting an event, a `roomName` that still resolves.
async fn retention_deletes_what_ended_or_idled_and_nothing_else(mut f: Fixture) {
    let (ana, ben) = (f.user(0, "Ana").await, f.user(1, "Ben").await);
    // The active room is made first: a deletion by creation time would take it first.
    let active = f.room(0, "active").await;
    let idle = f.room(1, "idle").await;
    let cancelled = f.call(0, &ana, &ben).await;
    let cancelled = f.act(1, &cancelled, "end", &ana).await;
    let completed = f.call(1, &ana, &ben).await;
    f.act(0, &completed, "accept", &ben).await;
    let completed = f.act(1, &completed, "end", &ben).await;
    let declined = f.call(0, &ben, &ana).await;
    let declined = f.act(1, &declined, "decline", &ana).await;
    let ringing = f.call(1, &ana, &ben).await;
    let talking = f.call(0, &ben, &ana).await;
    let talking = f.act(1, &talking, "accept", &ana).await;
    f.heard().await;

    let gone = [&cancelled, &completed, &declined];
    let mut joins = 0;
    let mut last_join;
    let started = Instant::now();
    loop {
        // Joins every ~0.1 s keep the active room's last activity well within 1 s.
        last_join = Instant::now();
        f.join(joins, &active, if joins % 2 == 0 { &ana } else { &ben }).await;
        joins += 1;
        let (status, room) = f.api(joins).get(&format!("/rooms/{}", id(&active))).await;
        assert_eq!(status, StatusCode::OK, "a room joined within its retention stays: {room}");
        let mut all_gone = f.api(joins).get(&format!("/rooms/{}", id(&idle))).await.0 == StatusCode::NOT_FOUND;
        if all_gone {
            assert!(chrono::Utc::now().timestamp_millis() >= millis(&idle["createdAt"]) + 1000, "deleted early");
        }
        for call in gone {
            let (status, _) = f.api(joins).get(&format!("/calls/{}", id(call))).await;
            if status == StatusCode::NOT_FOUND {
                let now = chrono::Utc::now().timestamp_millis();
                assert!(now >= millis(&call["endTime"]) + 1000, "deleted before its retention: {call}");
            }
            all_gone &= status == StatusCode::NOT_FOUND;
        }
        if all_gone {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1) + RETENTION_BOUND, "not deleted in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for call in gone {
        let (status, body) = f.api(0).get(&format!("/calls/{}", id(call))).await;
        assert_problem(status, &body, 404, "call_not_found");
        let token = json!({ "roomName": call["roomName"], "userId": ana });
        let (status, body) = f.api(1).post("/livekit/token", token).await;
        assert_problem(status, &body, 404, "room_not_found");
    }
    let (status, body) = f.api(1).get(&format!("/rooms/{}", id(&idle))).await;
    assert_problem(status, &body, 404, "room_not_found");
    let (status, body) = f.api(0).post("/livekit/token", json!({ "roomName": idle["roomName"], "userId": ana })).await;
    assert_problem(status, &body, 404, "room_not_found");
    let (status, body) = f.api(1).post(&format!("/rooms/{}/join", id(&idle)), json!({ "userId": ana })).await;
    assert_problem(status, &body, 404, "room_not_found");
    let gone_ids: Vec<&str> = gone.iter().map(|c| id(c)).chain([id(&idle)]).collect();
    let lists = [
        "/calls?limit=1000".to_owned(),
        "/calls?status=ended".to_owned(),
        format!("/calls?userId={ana}"),
        format!("/calls?userId={ben}&status=ended"),
        "/rooms".to_owned(),
    ];
    for list in &lists {
        let (_, items) = f.api(0).get(list).await;
        let listed = ids(items.as_array().expect("a list"));
        assert!(
            gone_ids.iter().all(|g| !listed.iter().any(|l| l == g)),
            "{list} still lists a deleted item: {listed:?}"
        );
    }
    for (call, status) in [(&ringing, "initiated"), (&talking, "accepted")] {
        let (code, now) = f.api(1).get(&format!("/calls/{}", id(call))).await;
        assert_eq!((code, now["status"].as_str()), (StatusCode::OK, Some(status)), "a call not ended stays: {now}");
    }
    let (_, open) = f.api(0).get("/calls").await;
    assert_eq!(ids(open.as_array().expect("a list")), vec![id(&talking), id(&ringing)]);

    let joined: Vec<(String, Value)> = f.heard().await;
    assert_eq!(joined.len(), joins, "only the joins were announced: {joined:?}");
    assert!(joined.iter().all(|(name, arg)| name == "room.joined" && arg["data"]["roomId"] == active["id"]));

    // The joins stop: the room goes, not before 1 s after the last one.
    let path = format!("/rooms/{}", id(&active));
    eventually_within(Duration::from_secs(1) + RETENTION_BOUND, "the room deleted after its last join", || async {
        let status = f.api(0).get(&path).await.0;
        if status == StatusCode::NOT_FOUND {
            assert!(last_join.elapsed() >= Duration::from_secs(1), "deleted before its retention after the last join");
        }
        status == StatusCode::NOT_FOUND
    })
    .await;
    let (status, body) =
        f.api(1).post("/livekit/token", json!({ "roomName": active["roomName"], "userId": ben })).await;
    assert_problem(status, &body, 404, "room_not_found");
    assert!(f.heard().await.is_empty(), "retention emits no event");
}

// ---------------------------------------------------------------------------------------
// The store itself (Redis)

/// What the namespace still holds of `tracked` ids: keys whose name holds one, members,
/// fields or values that hold one (the event log aside: its entries mention ids), and
/// delivery ids with no time to live.
fn leftovers(keys: &[Key], tracked: &[String]) -> Vec<String> {
    let prefix = format!("{{{NS}}}:");
    let mut left = Vec::new();
    for key in keys {
        let local = key.name.strip_prefix(&prefix).unwrap_or(&key.name);
        if local == "log" || local == "log:last" {
            continue;
        }
        if local.starts_with("delivery:") {
            if key.ttl_ms < 0 {
                left.push(format!("{} has no time to live", key.name));
            }
            continue;
        }
        if let Some(t) = tracked.iter().find(|t| key.name.contains(t.as_str())) {
            left.push(format!("key {} ({}) names {t}", key.name, key.kind));
        }
        // Histories (streams) of users still there mention what they heard.
        for item in key.content.iter().filter(|_| key.kind != "stream") {
            if let Some(t) = tracked.iter().find(|t| item.contains(t.as_str())) {
                left.push(format!("{} ({}) holds {t} in {item}", key.name, key.kind));
            }
        }
    }
    left
}

/// Retention of 1 s, users erased, calls ended every way (end, decline, ring timeout, max
/// duration, webhook, erasure), rooms joined: once their time is up the namespace holds no
/// key naming any of those calls, rooms, `roomName`s or erased users, and no member of any
/// index, set or list holds one. Breaks it: any index, per-user set, `roomname:` pointer,
/// deadline, room member list or history forgotten by the deletion or the erasure.
#[tokio::test]
async fn no_key_is_left_behind() {
    let flags = [
        "--auth",
        "token",
        "--auth-secret",
        AUTH_SECRET,
        "--call-retention",
        "1",
        "--room-retention",
        "1",
        "--call-ring-timeout",
        "2",
        "--call-max-duration",
        "2",
    ];
    let f = Fixture::new(Backend::Redis, &flags).await;
    let (ana, _, ana_api) = f.person(0, "Ana").await;
    let (ben, ..) = f.person(1, "Ben").await;
    let (kim, lee) = (f.user(0, "Kim").await, f.user(1, "Lee").await);
    let r1 = f.room(0, "r1").await;
    f.join(1, &r1, &ana).await;
    f.join(0, &r1, &kim).await;
    let r2 = f.room(1, "r2").await;
    f.join(0, &r2, &ben).await;
    let r3 = f.room(0, "r3").await;

    let mut calls = Vec::new();
    let cancelled = f.call(0, &ana, &ben).await;
    f.act(1, &cancelled, "end", &ana).await;
    let completed = f.call(1, &ana, &ben).await;
    f.act(0, &completed, "accept", &ben).await;
    f.act(1, &completed, "end", &ben).await;
    let declined = f.call(0, &kim, &lee).await;
    f.act(1, &declined, "decline", &lee).await;
    let missed = f.call(1, &kim, &lee).await;
    let expired = f.call(0, &lee, &kim).await;
    f.act(1, &expired, "accept", &kim).await;
    let to_erased = f.call(0, &kim, &ana).await;
    let from_erased = f.call(1, &ben, &kim).await;
    f.act(0, &from_erased, "accept", &kim).await;
    let finished = f.call(1, &lee, &kim).await;
    f.act(0, &finished, "accept", &kim).await;
    let hook = webhook_body("room_finished", "EV_bounded_finished", &finished["roomName"], None);
    let webhooks = Api::new(f.base(1));
    let (status, _) = post_webhook(&webhooks, &hook, Some(sign_webhook(&hook, crate::support::API_SECRET))).await;
    assert_eq!(status, StatusCode::OK);
    calls.extend([cancelled, completed, declined, missed, expired, to_erased, from_erased, finished]);

    let (status, body) = Fixture::erase_with(&ana_api, &ana).await;
    assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""), "erased by herself");
    f.erase(1, &ben).await;

    let mut tracked = vec![ana.clone(), ben.clone()];
    for thing in calls.iter().chain([&r1, &r2, &r3]) {
        tracked.extend([id(thing).to_owned(), text(&thing["roomName"]).to_owned()]);
    }
    let port = f.redis_port();
    let before = leftovers(&keyspace(port, &format!("{{{NS}}}:*")), &tracked);
    assert!(
        before.iter().any(|l| l.contains(&format!("call:{}", id(&calls[0])))),
        "the dump sees the store: {before:?}"
    );

    // Ring timeout and max duration (2 s), then retention (1 s), then at most 10 s.
    let deadline = Instant::now() + Duration::from_secs(3) + RETENTION_BOUND;
    loop {
        let left = leftovers(&keyspace(port, &format!("{{{NS}}}:*")), &tracked);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "keys left behind:\n{}", left.join("\n"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, users) = f.api(0).get("/users").await;
    assert_eq!(ids(users.as_array().expect("a list")), vec![kim.clone(), lee.clone()]);
    let (_, all) = f.api(1).get("/calls").await;
    assert_eq!(all, json!([]));
    let (_, rooms) = f.api(0).get("/rooms").await;
    assert_eq!(rooms, json!([]));
}

/// The sum of every series of a counter on one replica's `/metrics`.
async fn counter(api: &Api, name: &str) -> f64 {
    let scrape = api.raw(Method::GET, "/metrics").send().await.expect("sent").text().await.expect("text");
    scrape
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const CORRUPT: &str = "switchboard_store_corrupt_total";

/// A call, a user and a room whose documents are not JSON: each read is a 500
/// `internal_error` problem (not a 503: the store is up), counted, while the replica stays
/// ready and every other document answers. Breaks it: treating a decoding error as an
/// outage (503, `/readyz` failing, Retry-After), panicking, no counter.
#[tokio::test]
async fn a_corrupt_document_is_an_internal_error_not_an_outage() {
    let f = Fixture::new(Backend::Redis, &[]).await;
    let (ana, ben) = (f.user(0, "Ana").await, f.user(1, "Ben").await);
    let (cat, dan) = (f.user(0, "Cat").await, f.user(1, "Dan").await);
    let bad_call = f.call(0, &ana, &ben).await;
    let good_call = f.call(1, &ana, &ben).await;
    let bad_room = f.room(0, "bad").await;
    let good_room = f.room(1, "good").await;
    let port = f.redis_port();
    for key in [format!("call:{}", id(&bad_call)), format!("user:{cat}"), format!("room:{}", id(&bad_room))] {
        assert_eq!(cli(port, &["SET", &format!("{{{NS}}}:{key}"), "not json"]), "OK");
    }
    for n in 0..2 {
        let api = f.api(n);
        let before = counter(api, CORRUPT).await;
        for path in [format!("/calls/{}", id(&bad_call)), format!("/users/{cat}"), format!("/rooms/{}", id(&bad_room))]
        {
            let res = api.raw(Method::GET, &path).send().await.expect("sent");
            let status = res.status();
            let (content_type, retry) =
                (res.headers().get("content-type").cloned(), res.headers().get("retry-after").cloned());
            let body: Value = res.json().await.expect("a problem document");
            assert_problem(status, &body, 500, "internal_error");
            assert_eq!((body["status"].as_u64(), body["type"].as_str()), (Some(500), Some("about:blank")), "{body}");
            assert_eq!(content_type.as_ref().and_then(|v| v.to_str().ok()), Some("application/problem+json"));
            assert_eq!(retry, None, "{path}: a corrupt document is not worth retrying");
        }
        // The counter is process-wide: tests alongside may add to it, never take from it.
        let after = counter(api, CORRUPT).await;
        assert!(after >= before + 3.0, "replica {n}: {CORRUPT} from {before} to {after}");
        assert_eq!(api.get("/readyz").await.0, StatusCode::OK, "replica {n} stays ready");
        let (status, call) = api.get(&format!("/calls/{}", id(&good_call))).await;
        assert_eq!((status, call["status"].as_str()), (StatusCode::OK, Some("initiated")), "{call}");
        assert_eq!(api.get(&format!("/users/{dan}")).await.0, StatusCode::OK);
        assert_eq!(api.get(&format!("/rooms/{}", id(&good_room))).await.0, StatusCode::OK);
        let (status, _) = api.post("/calls", json!({ "fromUserId": dan, "toUserId": ben })).await;
        assert_eq!(status, StatusCode::CREATED, "writes go on");
    }
}

/// The deadlines hold a call whose document is corrupt (due now) and deadlines of a call
/// and a room that do not exist: the other calls are still missed on time, on either
/// replica's clock, and the bad entries leave the deadlines instead of being read again on
/// every tick; a deadline written before v3 (a bare call id) still fires. Breaks it: a
/// timer that stops at the first entry it cannot decode, or
/// retries it for ever (it is the earliest, so every tick reads it first).
#[tokio::test]
async fn corrupt_and_orphaned_deadlines_delay_no_other_call() {
    let mut f = Fixture::new(Backend::Redis, &["--call-ring-timeout", "2"]).await;
    let (ana, ben) = (f.user(0, "Ana").await, f.user(1, "Ben").await);
    let bad = f.call(0, &ana, &ben).await;
    let port = f.redis_port();
    let key = |local: &str| format!("{{{NS}}}:{local}");
    let past = (chrono::Utc::now().timestamp_millis() - 60_000).to_string();
    let bad_member = format!("call:{}", id(&bad));
    let orphans = [format!("call:{}", uuid::Uuid::new_v4()), format!("room:{}", uuid::Uuid::new_v4())];
    assert_eq!(cli(port, &["SET", &key(&format!("call:{}", id(&bad))), "not json"]), "OK");
    for member in [&bad_member, &orphans[0], &orphans[1]] {
        cli(port, &["ZADD", &key("deadlines"), &past, member]);
    }
    f.heard().await;

    let mut ringing = Vec::new();
    for n in 0..4 {
        ringing.push(id(&f.call(n, &ana, &ben).await).to_owned());
    }
    // One deadline as a replica before v3 wrote it (the bare call id): still fired on time.
    let v3_entry = format!("call:{}", ringing[0]);
    let due = cli(port, &["ZSCORE", &key("deadlines"), &v3_entry]);
    assert!(!due.is_empty(), "the ring timeout is stored as {v3_entry}");
    cli(port, &["ZREM", &key("deadlines"), &v3_entry]);
    cli(port, &["ZADD", &key("deadlines"), &due, &ringing[0]]);
    for client in &mut f.clients {
        let heard = until_ended(client, &ringing).await;
        for call in &ringing {
            assert_eq!(heard[call], vec!["call.started", "call.missed", "call.ended"], "{call}");
        }
    }
    for call in &ringing {
        let (_, now) = f.api(0).get(&format!("/calls/{call}")).await;
        let late = millis(&now["endTime"]) - millis(&now["startTime"]);
        assert!((2000..=4000).contains(&late), "missed 2 s after it started, within 2 s: {now}");
    }
    for member in [&bad_member, &orphans[0], &orphans[1]] {
        eventually_within(WAIT, "a bad deadline to leave the deadlines", || async {
            cli(port, &["ZSCORE", &key("deadlines"), member]).is_empty()
        })
        .await;
    }
    // Once parked (or dropped), the bad entries stay out: another call's whole ring time
    // passes without them coming back. (The corrupt counter is process-wide, shared with
    // tests running alongside, so it cannot tell here.)
    let more = vec![id(&f.call(1, &ben, &ana).await).to_owned()];
    for client in &mut f.clients {
        assert_eq!(until_ended(client, &more).await[&more[0]], vec!["call.started", "call.missed", "call.ended"]);
    }
    for member in [&bad_member, &orphans[0], &orphans[1]] {
        assert_eq!(cli(port, &["ZSCORE", &key("deadlines"), member]), "", "{member} is back in the deadlines");
    }
    assert_eq!(f.api(0).get("/readyz").await.0, StatusCode::OK);
}

on_both_stores!(&[];
    every_list_walks_to_its_end_once_in_order,
    cursors_and_limits_are_checked,
    erasing_a_user_ends_their_calls_and_removes_them,
    an_erasure_racing_a_call_leaves_no_open_call,
);

mod token {
    on_both_stores!(&crate::support::TOKEN_MODE;
        every_list_walks_to_its_end_once_in_order,
        erasing_a_user_ends_their_calls_and_removes_them,
        only_the_user_may_erase_and_then_is_shut_out,
    );
    use super::*;
}

mod racing_retention {
    on_both_stores!(&["--call-retention", "1", "--call-ring-timeout", "0"];
        a_walk_racing_changes_sees_what_stayed_once_in_order,
    );
    use super::*;
}

mod retention {
    on_both_stores!(&["--call-retention", "1", "--room-retention", "1", "--call-ring-timeout", "0"];
        retention_deletes_what_ended_or_idled_and_nothing_else,
    );
    use super::*;
}
