-- KEYS: log, log:last, deadlines. ARGV: limit, lease (ms).
-- Claims the deadlines due by the store's clock (not a replica's), earliest first: each is
-- moved to now + lease, so that no other replica takes it until then; the replica's change
-- then applies only while the deadline is still its claim. A replica that dies holding a
-- claim delays that deadline by the lease, no more.
-- An entry written before v3 (a bare call id) is renamed to 'call:<id>' as it is claimed.
-- Returns {claim, entry, due, entry, due, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local claim = now + tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'WITHSCORES', 'LIMIT', 0, ARGV[1])
local out = {claim}
for i = 1, #due, 2 do
  local entry = due[i]
  if not entry:find(':', 1, true) then
    redis.call('ZREM', KEYS[3], entry)
    entry = 'call:' .. entry
  end
  redis.call('ZADD', KEYS[3], claim, entry)
  out[#out + 1] = entry
  out[#out + 1] = due[i + 1]
end
return out
