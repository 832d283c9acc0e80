-- KEYS: log, log:last, deadlines, call, roomname, then every index the call may be in.
-- ARGV: id, deadline entry, claim (ms). Deletes an ended call whose deletion this replica
-- claimed; emits nothing. Returns {'deleted'} or {'unclaimed'}.
if not unschedule(KEYS[3], ARGV[2], ARGV[3]) then return {'unclaimed'} end
redis.call('DEL', KEYS[4], KEYS[5])
for i = 6, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return {'deleted'}
