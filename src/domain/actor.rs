//! Who acts: with `AUTH=open` anyone may act as any user (v1); with `AUTH=token` a user
//! acts only as themselves, and a server acts as anyone (section 8 of the contract).

use super::{Call, UserId};

/// The identity a request or a connection speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// `AUTH=open`: no credentials; a request names the user it acts for.
    Anyone,
    /// A user token's user.
    User(UserId),
    /// A server token: acts as any user, hears every event.
    Server,
}

/// A request naming a user its actor may not act as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forbidden;

impl Actor {
    /// The user a request acts as, given the user its body names (if any): a user acts as
    /// themselves (naming no one, or themselves); anyone else as the user named.
    pub fn acting_as(self, named: Option<UserId>) -> Result<Option<UserId>, Forbidden> {
        match (self, named) {
            (Self::User(me), None) => Ok(Some(me)),
            (Self::User(me), Some(other)) if other != me => Err(Forbidden),
            (_, named) => Ok(named),
        }
    }

    /// Whether the call is visible: calls are private to their two parties.
    pub fn may_see(self, call: &Call) -> bool {
        self.own_calls().is_none_or(|me| call.involves(me))
    }

    /// The only user whose calls a listing may show, if limited to one.
    pub fn own_calls(self) -> Option<UserId> {
        match self {
            Self::User(me) => Some(me),
            Self::Anyone | Self::Server => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_act_only_as_themselves() {
        let (me, other) = (UserId::new(), UserId::new());
        assert_eq!(Actor::User(me).acting_as(None), Ok(Some(me)));
        assert_eq!(Actor::User(me).acting_as(Some(me)), Ok(Some(me)));
        assert_eq!(Actor::User(me).acting_as(Some(other)), Err(Forbidden));
        assert_eq!(Actor::Server.acting_as(Some(other)), Ok(Some(other)));
        assert_eq!(Actor::Server.acting_as(None), Ok(None));
        assert_eq!(Actor::Anyone.acting_as(Some(other)), Ok(Some(other)));
        let call = Call::new(me, UserId::new());
        assert!(Actor::User(me).may_see(&call) && !Actor::User(other).may_see(&call) && Actor::Server.may_see(&call));
    }
}
