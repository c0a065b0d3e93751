using System.Text.Json;
using System.Text.Json.Serialization;

namespace Adaptive.Core.Api.V1Alpha1;

/// <summary>
/// Resource quantities are int-or-string in the CRD, as in Kubernetes: <c>cpu: 2</c> (unquoted) comes back
/// from the API server as the JSON number 2, <c>cpu: "2"</c> or <c>memory: 4Gi</c> as strings. Both are read
/// as the quantity's text; they are written back as strings, which the schema also accepts.
/// </summary>
public sealed class QuantityMapConverter : JsonConverter<Dictionary<string, string>>
{
    public override Dictionary<string, string> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.StartObject) throw new JsonException("resource quantities must be an object of name: quantity");
        var result = new Dictionary<string, string>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            string name = reader.GetString()!;
            reader.Read();
            result[name] = reader.TokenType switch
            {
                JsonTokenType.String => reader.GetString()!,
                JsonTokenType.Number => System.Text.Encoding.UTF8.GetString(reader.HasValueSequence ? System.Buffers.BuffersExtensions.ToArray(reader.ValueSequence) : reader.ValueSpan),
                _ => throw new JsonException($"resource quantity {name} must be a number or a string, got {reader.TokenType}"),
            };
        }
        return result;
    }

    public override void Write(Utf8JsonWriter writer, Dictionary<string, string> value, JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        foreach (var (name, quantity) in value) writer.WriteString(name, quantity);
        writer.WriteEndObject();
    }
}
