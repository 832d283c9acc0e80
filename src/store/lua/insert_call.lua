-- ARGV: id, fromUserId, toUserId, roomName, document, score (startTime in ms), deadline (ms) or '', event
-- Returns {'ok', caller document} or {'no_user', missing id}; writes nothing in the latter case.
local id, from, to = ARGV[1], ARGV[2], ARGV[3]
local caller = redis.call('GET', p .. 'user:' .. from)
if not caller then return {'no_user', from} end
if redis.call('EXISTS', p .. 'user:' .. to) == 0 then return {'no_user', to} end
redis.call('SET', p .. 'call:' .. id, ARGV[5])
-- One index per filter of GET /calls: all, by status, by user, by user and status.
for _, idx in ipairs({'calls', 'user:' .. from .. ':calls', 'user:' .. to .. ':calls'}) do
  redis.call('ZADD', p .. idx, ARGV[6], id)
  redis.call('ZADD', p .. idx .. ':initiated', ARGV[6], id)
end
redis.call('SET', p .. 'roomname:' .. ARGV[4], 'call:' .. id)
-- The ring timeout: a stored deadline every replica's timer polls (see due_calls.lua).
if ARGV[7] ~= '' then redis.call('ZADD', p .. 'deadlines', ARGV[7], id) end
emit(ARGV[8])
return {'ok', caller}
