-- ARGV: id, endTime, event
-- Returns {'ended', doc} to exactly one caller, {'already', doc} to the rest, or {'not_found'}.
local id = ARGV[1]
local key = p .. 'call:' .. id
local doc = redis.call('GET', key)
if not doc then return {'not_found'} end
local call = cjson.decode(doc)
if call.status == 'ended' then return {'already', doc} end
call.status = 'ended'
call.endTime = ARGV[2]
doc = cjson.encode(call)
redis.call('SET', key, doc)
local score = redis.call('ZSCORE', p .. 'calls', id)
for _, idx in ipairs({'calls', 'user:' .. call.fromUserId .. ':calls', 'user:' .. call.toUserId .. ':calls'}) do
  redis.call('ZREM', p .. idx .. ':initiated', id)
  redis.call('ZADD', p .. idx .. ':ended', score, id)
end
emit(ARGV[3])
return {'ended', doc}
