-- wrk script: one ResNet image (FP32, binary tensor data) per request, with GAP ms between requests, as
-- a replica idles between requests at low load. Prints latency p50/p90 and the server's own ONNX Runtime
-- call (its Server-Timing header, infer;dur=) at p50/p90, and how many calls took over SLOW ms.
-- Environment: GAP (ms, default 15), RESOLUTION (default 224), INPUT (input name, default "input"),
-- SLOW (ms, default 14). Usage: see the README's "Model server benchmark".
local gap = tonumber(os.getenv("GAP") or "15")
local resolution = tonumber(os.getenv("RESOLUTION") or "224")
local slow_ms = tonumber(os.getenv("SLOW") or "14")
local bytes = 3 * resolution * resolution * 4
local header = string.format(
  '{"inputs":[{"name":"%s","shape":[1,3,%d,%d],"datatype":"FP32","parameters":{"binary_data_size":%d}}],"parameters":{"binary_data_output":true}}',
  os.getenv("INPUT") or "input", resolution, resolution, bytes)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = tostring(#header)
wrk.body = header .. string.rep("\0", bytes)

function delay() return gap end

infer = {}
function response(status, headers, body)
  local timing = headers["Server-Timing"]
  local ms = timing and string.match(timing, "infer;dur=([%d%.]+)")
  if ms then infer[#infer + 1] = tonumber(ms) end
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
  local all = {}
  for _, thread in ipairs(threads) do
    for _, ms in ipairs(thread:get("infer")) do all[#all + 1] = ms end
  end
  table.sort(all)
  local function at(q) return #all > 0 and all[math.floor(#all * q) + 1] or 0 end
  local slow = 0
  for _, ms in ipairs(all) do if ms > slow_ms then slow = slow + 1 end end
  io.write(string.format("latency p50 %.2f p90 %.2f ms | Run p50 %.2f p90 %.2f ms | Run over %d ms: %d of %d | errors: %d\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, at(0.5), at(0.9), slow_ms, slow, #all,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
