//! Pure domain types: ids, validated names, timestamps, the three resources and the
//! events they cause. No I/O and no HTTP here.

mod actor;
mod device;
mod event;
mod ids;
mod lifecycle;
mod name;
mod page;
mod resources;
mod time;

pub use actor::{Actor, Forbidden};
pub use device::{Address, Device, DeviceView, Environment, Platform, Registration};
pub use event::Event;
pub use ids::{CallId, DeviceId, RoomId, RoomName, UserId};
pub use lifecycle::{DeclineReason, Outcome, Refusal, Timeouts, Transition};
pub use name::{Name, NameError};
pub use page::{List, Listed, Order, Page, PageRequest, Position};
pub use resources::{Call, CallFilter, CallStatus, EndReason, LiveKitRoom, Room, User};
pub use time::Timestamp;
