-- KEYS: log, log:last, call, deadlines, delivery id, then the call's 3 indexes in the
-- expected status, then its 3 indexes in the new status.
-- ARGV: id, expected status, new document, score (startTime in ms), deadline entry
--       ('call:<id>'), deadline (ms) or '', claim (ms) or '', delivery ttl (s) or '' (no
--       delivery id), events...
-- Applies one transition decided on a call in `expected status`. Returns {'applied'},
-- {'stale', current doc} when the call moved on (or its document cannot be read),
-- {'gone'} when it was deleted, {'unclaimed'} when a timer's claim no longer holds,
-- {'duplicate'} for a delivery id seen before.
local call, deadlines = KEYS[3], KEYS[4]
local doc = redis.call('GET', call)
if not doc then
  redis.call('ZREM', deadlines, ARGV[5])
  return {'gone'}
end
if ARGV[7] ~= '' and tonumber(redis.call('ZSCORE', deadlines, ARGV[5])) ~= tonumber(ARGV[7]) then
  return {'unclaimed'}
end
local ok, stored = pcall(cjson.decode, doc)
if not ok or type(stored) ~= 'table' or stored.status ~= ARGV[2] then return {'stale', doc} end
if ARGV[8] ~= '' and not redis.call('SET', KEYS[5], '1', 'NX', 'EX', ARGV[8]) then
  return {'duplicate'}
end
redis.call('SET', call, ARGV[3])
for i = 6, 8 do redis.call('ZREM', KEYS[i], ARGV[1]) end
for i = 9, 11 do redis.call('ZADD', KEYS[i], ARGV[4], ARGV[1]) end
if ARGV[6] == '' then
  redis.call('ZREM', deadlines, ARGV[5])
else
  redis.call('ZADD', deadlines, ARGV[6], ARGV[5])
end
for i = 9, #ARGV do emit(ARGV[i]) end
return {'applied'}
