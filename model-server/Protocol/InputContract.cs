namespace Adaptive.ModelServer.Protocol;

/// <summary>
/// What a model accepts, checked while a request is read, before any of its tensor memory is taken: each
/// input's name, datatype and shape (fixed dimensions must match, the first is the batch and holds at most
/// the max batch size), and so the most bytes an honest request body can take.
/// </summary>
public sealed class InputContract(IReadOnlyList<TensorSpec> inputs, long maxRows)
{
    /// <summary>Room for the JSON around the data: names, shapes, parameters, outputs.</summary>
    const long EnvelopeBytes = 64 * 1024;
    /// <summary>The most JSON text one number takes, with its separator and room for nesting and spaces (-1.2345678901234567e-308 is 24).</summary>
    public const long JsonBytesPerElement = 48;

    public IReadOnlyList<TensorSpec> Inputs => inputs;

    /// <summary>Checks one input as declared in a request; throws a 400 naming what does not match.</summary>
    public void Check(string name, TensorDataType type, long[] shape)
    {
        var spec = inputs.FirstOrDefault(s => s.Name == name)
            ?? throw Bad($"unknown input '{name}'; the model's inputs are {string.Join(", ", inputs.Select(i => i.Name))}");
        if (type != spec.DataType)
            throw Bad($"input '{name}' has datatype {type.ToProtocolName()}, the model expects {spec.DataType.ToProtocolName()}");
        if (shape.Length != spec.Shape.Length || shape.Where((d, i) => spec.Shape[i] >= 0 && spec.Shape[i] != d).Any())
            throw Bad($"input '{name}' has shape {Tensor.FormatShape(shape)}, the model expects {Tensor.FormatShape(spec.Shape)} (-1: any size)");
        if (shape.Length > 0 && shape[0] > maxRows)
            throw Bad($"input '{name}' has {shape[0]} rows, more than the max batch size {maxRows}");
    }

    /// <summary>
    /// The largest body a request can need: every input at the max batch size, as raw bytes with the binary
    /// extension or as JSON numbers otherwise, plus the JSON around them. Null when an input has a dynamic
    /// dimension besides the batch one, or is BYTES: that bounds nothing.
    /// </summary>
    public long? MaxBodyBytes(bool binary)
    {
        long total = EnvelopeBytes;
        try
        {
            foreach (var spec in inputs)
            {
                if (spec.Shape.Skip(1).Any(d => d < 0) || !spec.DataType.HasFixedSize()) return null;
                long elements = spec.Shape.Skip(1).Aggregate(maxRows, (product, d) => checked(product * d));
                total = checked(total + elements * (binary ? spec.DataType.ElementSize() : JsonBytesPerElement));
            }
        }
        catch (OverflowException)
        {
            return null; // beyond any body limit: the server's own limit applies
        }
        return total;
    }

    static ProtocolException Bad(string message) => ProtocolException.Invalid(message);
}
