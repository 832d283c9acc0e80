-- ARGV: roomName. Returns {'call', doc}, {'room', doc, participants} or nil.
local owner = redis.call('GET', p .. 'roomname:' .. ARGV[1])
if not owner then return nil end
local kind, id = owner:match('^(%a+):(.+)$')
if kind == 'call' then return {'call', redis.call('GET', p .. 'call:' .. id)} end
local entry = room_entry(id)
if not entry then return nil end
return {'room', entry[1], entry[2]}
