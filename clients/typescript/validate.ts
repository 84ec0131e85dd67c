// Checks a request against the rules its proto declares (the `buf.validate` annotations;
// docs/openapi.md, "Constraints") before the client sends it. The rules are read at run time from
// the service's descriptor set (`supportdesk.binpb`, which deploy/local/generate-client writes
// with buf) by the protovalidate library (@bufbuild/protovalidate), so they are the rules the
// service enforces: a request refused here would have been answered INVALID_ARGUMENT naming the
// same fields, without a round trip.

import {
  createFileRegistry,
  fromBinary,
  fromJson,
  type DescMessage,
  type JsonValue,
  type Registry,
} from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { createValidator, type Violation } from "@bufbuild/protovalidate";

export class RequestChecker {
  private readonly registry: Registry;
  private readonly validator = createValidator();

  /** `descriptorSet`: a serialized google.protobuf.FileDescriptorSet of the service's protos. */
  constructor(descriptorSet: Uint8Array) {
    this.registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, descriptorSet));
  }

  /**
   * The fields of `request` (a message of type `messageName`, such as
   * `supportdesk.v1.CreateTicketRequest`, in its JSON form or encoded) that break a declared
   * rule, as the service names them in BadRequest: `ticket.subject`, `statuses[1]`. Empty when
   * the request keeps every rule.
   */
  violations(messageName: string, request: JsonValue | Uint8Array): string[] {
    const schema = this.schema(messageName);
    const message =
      request instanceof Uint8Array
        ? fromBinary(schema, request)
        : fromJson(schema, request, { registry: this.registry });
    const result = this.validator.validate(schema, message);
    switch (result.kind) {
      case "valid":
        return [];
      case "invalid":
        return result.violations.map(fieldPath);
      case "error":
        throw result.error;
    }
  }

  private schema(messageName: string): DescMessage {
    const schema = this.registry.getMessage(messageName);
    if (schema === undefined) {
      throw new Error(`the descriptor set has no message ${messageName}`);
    }
    return schema;
  }
}

/** A violation's field as a dotted path of proto field names, `[i]` for a list item. */
function fieldPath(violation: Violation): string {
  let path = "";
  for (const element of violation.field) {
    switch (element.kind) {
      case "list_sub":
        path += `[${element.index}]`;
        break;
      case "map_sub":
        path += `[${String(element.key)}]`;
        break;
      default:
        path += (path === "" ? "" : ".") + element.name;
    }
  }
  return path;
}
