-- Shared by every script. KEYS[1] is the key prefix ("{namespace}:"), declared as the
-- script's key so that Redis Cluster routes the script to the node owning the prefix's
-- slot: the braces make it a hash tag, so all of a deployment's keys live in that slot.
local p = KEYS[1]

-- A room document and its participants in join order, or nil.
local function room_entry(id)
  local doc = redis.call('GET', p .. 'room:' .. id)
  if not doc then return nil end
  return {doc, redis.call('LRANGE', p .. 'room:' .. id .. ':participants', 0, -1)}
end

-- Publishes a change's event in the same atomic step as the change: no change without
-- its event, no event without its change, whatever happens to the caller.
local function emit(message)
  redis.call('PUBLISH', p .. 'events', message)
end
