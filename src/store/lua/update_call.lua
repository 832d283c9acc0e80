-- ARGV: id, fromUserId, toUserId, expected status, new status, new document,
--       deadline (ms) or '', claim (ms) or '', delivery id or '', delivery ttl (s), events...
-- Applies one transition decided on a call in `expected status`. Returns {'applied'},
-- {'stale', current doc} / {'stale'} when the call moved on or is gone, {'unclaimed'} when a
-- timer's deadline is no longer the stored one, {'duplicate'} for a delivery id seen before.
local id = ARGV[1]
local key = p .. 'call:' .. id
local deadlines = p .. 'deadlines'
local doc = redis.call('GET', key)
if not doc then
  redis.call('ZREM', deadlines, id)
  return {'stale'}
end
if ARGV[8] ~= '' and tonumber(redis.call('ZSCORE', deadlines, id)) ~= tonumber(ARGV[8]) then
  return {'unclaimed'}
end
if cjson.decode(doc).status ~= ARGV[4] then return {'stale', doc} end
if ARGV[9] ~= '' and not redis.call('SET', p .. 'delivery:' .. ARGV[9], '1', 'NX', 'EX', ARGV[10]) then
  return {'duplicate'}
end
redis.call('SET', key, ARGV[6])
local score = redis.call('ZSCORE', p .. 'calls', id)
for _, idx in ipairs({'calls', 'user:' .. ARGV[2] .. ':calls', 'user:' .. ARGV[3] .. ':calls'}) do
  redis.call('ZREM', p .. idx .. ':' .. ARGV[4], id)
  redis.call('ZADD', p .. idx .. ':' .. ARGV[5], score, id)
end
if ARGV[7] == '' then
  redis.call('ZREM', deadlines, id)
else
  redis.call('ZADD', deadlines, ARGV[7], id)
end
for i = 11, #ARGV do emit(ARGV[i]) end
return {'applied'}
