//! Devices (contract section 10.1): who may register, list and delete them, and how a
//! registration of an address already registered is resolved (same user: updated; another
//! user: moved).

use super::{Error, Result, Service};
use crate::domain::{Actor, Device, DeviceId, DeviceView, Registration, UserId};
use crate::push::PushSettings;
use crate::store::{DeleteDevice, PutDevice, StoreError};
use crate::telemetry::metrics;

/// How many times a registration reads its address again after another registration of
/// the same address came in between.
const REGISTER_ROUNDS: usize = 4;

/// A registration's result: the device, and whether it is new for this user (201).
#[derive(Debug)]
pub struct Registered {
    pub device: DeviceView,
    pub created: bool,
}

impl Service {
    /// The push settings apps read (`GET /push/config`) and registrations are checked
    /// against.
    pub fn push(&self) -> &PushSettings {
        &self.push
    }

    /// Registers a device of `user` (as the actor may).
    pub async fn register_device(&self, actor: Actor, user: UserId, registration: Registration) -> Result<Registered> {
        let user = Self::act(actor, Some(user), "id")?;
        for _ in 0..REGISTER_ROUNDS {
            let read = self.store.device_at(registration.platform, registration.address.identity()).await?;
            let device = match &read {
                Some(mine) if mine.user_id == user => mine.registered_again(registration.clone()),
                _ => Device::new(user, registration.clone()),
            };
            match self.store.put_device(&device, read.as_ref(), self.push.max_devices).await? {
                PutDevice::Stored { evicted } => {
                    let again = read.as_ref().is_some_and(|d| d.user_id == user);
                    if let Some(moved) = read.filter(|d| d.user_id != user) {
                        metrics::device_removed(moved.platform.as_str(), "moved");
                    }
                    for platform in evicted {
                        metrics::device_removed(platform.as_str(), "evicted");
                    }
                    return Ok(Registered { device: device.view(), created: !again });
                }
                PutDevice::NoUser => return Err(Error::UserNotFound(user)),
                PutDevice::Raced => {}
            }
        }
        Err(StoreError::Unreachable(format!("a device of user {user} kept being registered meanwhile")).into())
    }

    /// The user's devices, oldest first.
    pub async fn devices(&self, actor: Actor, user: UserId) -> Result<Vec<DeviceView>> {
        let user = Self::act(actor, Some(user), "id")?;
        let mut devices = self.store.devices(user).await?.ok_or(Error::UserNotFound(user))?;
        devices.sort_by_key(|d| (d.created_at, d.id));
        Ok(devices.iter().map(Device::view).collect())
    }

    pub async fn delete_device(&self, actor: Actor, user: UserId, id: DeviceId) -> Result<()> {
        let user = Self::act(actor, Some(user), "id")?;
        match self.store.delete_device(user, id).await? {
            DeleteDevice::Deleted(platform) => {
                metrics::device_removed(platform.as_str(), "deleted");
                Ok(())
            }
            DeleteDevice::NoUser => Err(Error::UserNotFound(user)),
            DeleteDevice::NoDevice => Err(Error::DeviceNotFound(id)),
        }
    }
}
