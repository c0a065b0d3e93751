// A gRPC client of the Open Inference Protocol built only from the published .proto (loaded at run time
// by @grpc/proto-loader) and @grpc/grpc-js: nothing of this project's own gRPC code is in it.
// Usage: node grpc-client.mjs <proto file> <host:port> <request JSON file>
// The request file: {"model": NAME, "id": ID, "inputs": [{"name", "datatype", "shape", "raw": base64 little-endian FP32}]}.
// Prints one JSON object: what each call answered (bytes as base64, int64 as strings), or its error code and details.
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { readFileSync } from 'node:fs';

const [protoFile, address, requestFile] = process.argv.slice(2);
const definition = protoLoader.loadSync(protoFile, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const Service = grpc.loadPackageDefinition(definition).inference.GRPCInferenceService;
const client = new Service(address, grpc.credentials.createInsecure(), {
  'grpc.max_receive_message_length': 64 << 20,
  'grpc.max_send_message_length': 64 << 20,
});
const request = JSON.parse(readFileSync(requestFile, 'utf8'));

function call(method, message) {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 20000);
    client[method](message, { deadline }, (error, response) => {
      if (error) resolve({ code: grpc.status[error.code], details: error.details });
      else resolve(response);
    });
  });
}

const raw = request.inputs.map((i) => Buffer.from(i.raw, 'base64'));
const inputs = request.inputs.map((i) => ({ name: i.name, datatype: i.datatype, shape: i.shape }));
const floats = (buffer) => Array.from(new Float32Array(buffer.buffer, buffer.byteOffset, buffer.byteLength / 4));
const encode = (response) => {
  if (!response.outputs) return response;
  return { ...response, raw_output_contents: response.raw_output_contents.map((b) => Buffer.from(b).toString('base64')) };
};

const result = {
  serverLive: await call('ServerLive', {}),
  serverReady: await call('ServerReady', {}),
  serverMetadata: await call('ServerMetadata', {}),
  modelMetadata: await call('ModelMetadata', { name: request.model, version: '' }),
  modelReady: await call('ModelReady', { name: request.model, version: '1' }),
  inferRaw: encode(await call('ModelInfer', { model_name: request.model, id: request.id, inputs, raw_input_contents: raw })),
  inferTyped: encode(await call('ModelInfer', {
    model_name: request.model,
    id: request.id,
    inputs: inputs.map((input, k) => ({ ...input, contents: { fp32_contents: floats(raw[k]) } })),
  })),
  unknownModel: await call('ModelInfer', { model_name: `${request.model}-unknown`, inputs, raw_input_contents: raw }),
};
client.close();
process.stdout.write(JSON.stringify(result));
