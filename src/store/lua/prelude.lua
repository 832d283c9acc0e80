-- Shared by every script, after the constants the store prepends: LOG_MAX and LOG_AGE_MS
-- (the event log's bounds), T (templates of the keys a script builds from ids it reads,
-- see keys.rs) and CHANNEL (where events are published). KEYS[1] and KEYS[2] are the
-- event log and its last id in every script; a script's own keys follow. Every key of a
-- deployment carries the same Cluster hash tag, so a script runs whole on one node.

-- The key of `id` in a template of T.
local function key(template, id)
  local hole = template:find('\0', 1, true)
  return template:sub(1, hole - 1) .. id .. template:sub(hole + 1)
end

-- Publishes a change's event in the same atomic step as the change: no change without
-- its event, no event without its change, whatever happens to the caller. The event is
-- appended to the namespace's log too (a stream of at most LOG_MAX entries and LOG_AGE_MS
-- milliseconds, both set by the store; each entry with the id before it) and published
-- framed as '<id> <prev>\n<body>' (events::frame): a replica that did not deliver `prev`
-- knows it missed something, and reads the log. An addressed event
-- (AUTH=token) comes as '#<users>|<max>|<ttl>\n<event>' (events::envelope): it is appended
-- to each user's history (a stream trimmed to max entries and to its last ttl seconds,
-- expiring ttl seconds after its last event) and published with "to": {user: offset};
-- '@' stands for `participants`.
local function publish(body)
  local log, last = KEYS[1], KEYS[2]
  -- The previous id is kept beside the stream: reading the stream's last entry costs more.
  local prev = redis.call('GET', last) or '0-0'
  local id = redis.call('XADD', log, 'MAXLEN', '~', LOG_MAX, '*', 'e', body, 'p', prev)
  redis.call('SET', last, id)
  local ms = tonumber(id:match('^(%d+)'))
  redis.call('XTRIM', log, 'MINID', '~', tostring(ms - LOG_AGE_MS))
  redis.call('PUBLISH', CHANNEL, id .. ' ' .. prev .. '\n' .. body)
end

local function emit(message, participants)
  if message:byte(1) ~= 35 then
    publish(message)
    return
  end
  local users, max, ttl, body = message:match('^#([^|]*)|(%d+)|(%d+)\n(.*)$')
  local list = participants or {}
  if users ~= '@' then
    list = {}
    for user in users:gmatch('[^,]+') do list[#list + 1] = user end
  end
  local to = {}
  for i, user in ipairs(list) do
    local stream = key(T.history, user)
    local offset = redis.call('XADD', stream, 'MAXLEN', max, '*', 'e', body)
    -- Entries older than ttl go too: an active user's stream would otherwise keep them.
    local ms = tonumber(offset:match('^(%d+)'))
    redis.call('XTRIM', stream, 'MINID', tostring(ms - tonumber(ttl) * 1000))
    redis.call('EXPIRE', stream, ttl)
    to[i] = '"' .. user .. '":"' .. offset .. '"'
  end
  publish('{"to":{' .. table.concat(to, ',') .. '},' .. body:sub(2))
end

-- Takes a claimed deadline off the schedule; false when the claim no longer holds (the
-- deadline moved, or another replica claimed it after this claim ran out).
local function unschedule(deadlines, entry, claim)
  if tonumber(redis.call('ZSCORE', deadlines, entry)) ~= tonumber(claim) then return false end
  redis.call('ZREM', deadlines, entry)
  return true
end
