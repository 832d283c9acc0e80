-- KEYS: log, log:last, the user's history. ARGV: offset, max age (s), limit. The user's
-- events after `offset`, at most `limit`, as {offset, event, ...}, oldest first; nil when
-- `offset` is no longer kept (trimmed, expired, or older than the max age) or was never an
-- offset of this user: events after it may be lost, and the client must resync.
local stream = KEYS[3]
local now = redis.call('TIME')
local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[2]) * 1000
local ms = tonumber(ARGV[1]:match('^(%d+)%-%d+$'))
if not ms or ms < cutoff then return nil end
local kept = redis.pcall('XRANGE', stream, ARGV[1], ARGV[1])
if type(kept) ~= 'table' or kept.err or #kept == 0 then return nil end
local out = {}
for _, entry in ipairs(redis.call('XRANGE', stream, '(' .. ARGV[1], '+', 'COUNT', ARGV[3])) do
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2][2]
end
return out
