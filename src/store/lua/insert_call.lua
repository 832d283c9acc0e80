-- KEYS: log, log:last, caller, callee, call, roomname, deadlines, then the call's indexes
-- while it rings (all calls, the caller's, the callee's, each also by status).
-- ARGV: id, document, score (startTime in ms), owner ('call:<id>'), deadline (ms) or '',
-- event. Returns {'stored', caller document}, or {'no_user', 'caller' | 'callee'} having
-- written nothing.
local caller = redis.call('GET', KEYS[3])
if not caller then return {'no_user', 'caller'} end
if redis.call('EXISTS', KEYS[4]) == 0 then return {'no_user', 'callee'} end
redis.call('SET', KEYS[5], ARGV[2])
redis.call('SET', KEYS[6], ARGV[4])
for i = 8, #KEYS do redis.call('ZADD', KEYS[i], ARGV[3], ARGV[1]) end
-- The ring timeout: a stored deadline that one replica claims when due (claim_due.lua).
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[7], ARGV[5], ARGV[4]) end
emit(ARGV[6])
return {'stored', caller}
