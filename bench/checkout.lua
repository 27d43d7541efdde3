-- wrk script: closed-loop checkouts (initiate, then verify with the OTP from the answer).
--
--   wrk -c 40 -d 15s -s bench/checkout.lua http://127.0.0.1:PORT -- 4111111111111111 12/29
--
-- Each wrk thread keeps a queue of issued (payment_id, otp). request() sends a
-- verify when the queue holds one, else an initiate; response() fills the queue
-- from initiate answers. One connection has one request in flight, so every
-- connection alternates initiate and verify as a shopper would. done() prints one
-- line, "BENCH-JSON {...}", that bench/wrk.py reads.

-- The initiate body, with the card number and expiry that bench/wrk.py passes after "--"
-- (loadtest/checkout.py's test card and expiry rule: the page's and the tools' one card).
local initiate_body
local headers = {["Content-Type"] = "application/json"}

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  initiate_body = string.format('{"card_number":"%s","expiry":"%s","cvv":"123","amount":"49.99"}', args[1], args[2])
  queue, head, tail = {}, 1, 0
  initiates, awaiting, unavailable, verified, other = 0, 0, 0, 0, 0
  served = {} -- answers per gunicorn worker (X-Worker-Pid)
end

function request()
  if head <= tail then
    local item = queue[head]
    queue[head] = nil
    head = head + 1
    local body = string.format('{"payment_id":"%s","otp":"%s"}', item[1], item[2])
    return wrk.format("POST", "/payment/verify-otp", headers, body)
  end
  return wrk.format("POST", "/payment/initiate", headers, initiate_body)
end

-- Answers are told apart by their body: only an initiate answer carries otp_expires_in
-- or otp_unavailable, only a verify answer says succeeded.
function response(status, hdrs, body)
  body = body or ""
  -- HAProxy hands on header names in lower case (HTTP/1.1 names are case-insensitive).
  local pid = hdrs["X-Worker-Pid"] or hdrs["x-worker-pid"] or "?"
  served[pid] = (served[pid] or 0) + 1
  if string.find(body, '"status"%s*:%s*"awaiting_otp"') then
    initiates, awaiting = initiates + 1, awaiting + 1
    local id = string.match(body, '"payment_id"%s*:%s*"([%w_]+)"')
    local otp = string.match(body, '"otp"%s*:%s*"(%d+)"')
    if id and otp then
      tail = tail + 1
      queue[tail] = {id, otp}
    end
  elseif string.find(body, "otp_unavailable") then
    initiates, unavailable = initiates + 1, unavailable + 1
  elseif status == 200 and string.find(body, '"status"%s*:%s*"succeeded"') then
    verified = verified + 1
  else -- an HTTP error of either call: validation, store unavailable, a refused OTP
    other = other + 1
  end
end

function done(summary, latency, requests)
  local total = {initiates = 0, awaiting = 0, unavailable = 0, verified = 0, other = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(total) do
      total[name] = total[name] + (thread:get(name) or 0)
    end
  end
  -- Keep-alive connections stay with the worker that accepted them, and wrk opens all of them at
  -- once: sometimes one worker takes them all. The busiest worker's share of the answers says so.
  local per_worker, answers, busiest = {}, 0, 0
  for _, thread in ipairs(threads) do
    for pid, n in pairs(thread:get("served") or {}) do
      per_worker[pid] = (per_worker[pid] or 0) + n
    end
  end
  for _, n in pairs(per_worker) do
    answers = answers + n
    if n > busiest then busiest = n end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"duration_us":%d,"requests":%d,"initiates":%d,"awaiting":%d,"unavailable":%d,' ..
    '"checkouts":%d,"other":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"busiest_share":%.3f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.duration, summary.requests, total.initiates, total.awaiting, total.unavailable,
    total.verified, total.other, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), answers > 0 and busiest / answers or 0, e.connect, e.read, e.write, e.status, e.timeout))
end
