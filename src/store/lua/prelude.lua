-- Shared by every script. ARGV[1] is the key prefix ("{namespace}:"): the braces make it a
-- hash tag, so all of a deployment's keys live in one slot and multi-key scripts stay legal.
local p = ARGV[1]

-- A room document and its participants in join order, or nil.
local function room_entry(id)
  local doc = redis.call('GET', p .. 'room:' .. id)
  if not doc then return nil end
  return {doc, redis.call('LRANGE', p .. 'room:' .. id .. ':participants', 0, -1)}
end
