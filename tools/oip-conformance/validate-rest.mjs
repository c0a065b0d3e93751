// Checks REST response bodies against the schemas of the Open Inference Protocol's published OpenAPI file,
// with Ajv (a JSON-schema validator nobody in this project wrote).
// Usage: node validate-rest.mjs <open_inference_rest.yaml> <bodies JSON file>
// The bodies file: [{"name": WHAT, "schema": COMPONENT SCHEMA NAME, "body": JSON VALUE, "binary": true|false}].
// "binary": the header of a response in the binary tensor data extension, whose outputs carry
// parameters.binary_data_size in place of data (the extension's one change to the schema).
// Prints [{"name", "valid", "errors"}] as JSON.
import Ajv from 'ajv';
import YAML from 'yaml';
import { readFileSync } from 'node:fs';

const [specFile, bodiesFile] = process.argv.slice(2);
const spec = YAML.parse(readFileSync(specFile, 'utf8'));
const ajv = new Ajv({ strict: false, allErrors: true });
ajv.addSchema({ $id: 'oip', components: spec.components });
const binary = structuredClone(spec.components);
binary.schemas.response_output.required = binary.schemas.response_output.required.filter((field) => field !== 'data');
ajv.addSchema({ $id: 'oip-binary', components: binary });

const results = JSON.parse(readFileSync(bodiesFile, 'utf8')).map(({ name, schema, body, binary: isBinary }) => {
  const validate = ajv.getSchema(`${isBinary ? 'oip-binary' : 'oip'}#/components/schemas/${schema}`);
  if (!validate) return { name, valid: false, errors: [`no schema ${schema} in ${specFile}`] };
  const valid = validate(body);
  return { name, valid, errors: valid ? [] : validate.errors.map((e) => `${e.instancePath} ${e.message}`) };
});
process.stdout.write(JSON.stringify(results));
