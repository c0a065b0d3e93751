using System.Runtime.InteropServices;
using Adaptive.Experiments.Zoo.Onnx;
using Google.Protobuf;

namespace Adaptive.Experiments.Zoo;

/// <summary>
/// Builds an ONNX model node by node, with weights drawn from a seeded generator so that the same
/// call always writes the same file. Tensor names are made unique with a counter.
/// </summary>
public sealed class OnnxGraphBuilder(string graphName, int seed)
{
    /// <summary>ONNX IR version 8 goes with opset 17, which every ONNX Runtime since 1.13 reads.</summary>
    const long IrVersion = 8;
    const long OpsetVersion = 17;

    readonly GraphProto graph = new() { Name = graphName };
    readonly Random random = new(seed);
    int counter;

    public long ParameterCount { get; private set; }

    /// <summary>A graph input of element type FLOAT; a null dimension is the symbolic batch dimension.</summary>
    public string Input(string name, params long?[] dims)
    {
        graph.Input.Add(ValueInfo(name, dims));
        return name;
    }

    public void Output(string tensor, params long?[] dims) => graph.Output.Add(ValueInfo(tensor, dims));

    /// <summary>A weight tensor, uniform in ±limit (limit = std·√3 keeps the requested standard deviation).</summary>
    public string Weight(string prefix, long[] dims, double standardDeviation)
    {
        long count = dims.Aggregate(1L, (a, b) => a * b);
        var values = new float[count];
        double limit = standardDeviation * Math.Sqrt(3);
        for (long i = 0; i < count; i++) values[i] = (float)((random.NextDouble() * 2 - 1) * limit);
        return Initializer(prefix, dims, values);
    }

    public string Initializer(string prefix, long[] dims, float[] values)
    {
        var tensor = new TensorProto
        {
            Name = Unique(prefix),
            DataType = (int)TensorProto.Types.DataType.Float,
            RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())),
        };
        tensor.Dims.AddRange(dims);
        graph.Initializer.Add(tensor);
        ParameterCount += values.Length;
        return tensor.Name;
    }

    /// <summary>Adds a node with one output and returns the output's name.</summary>
    public string Node(string opType, string[] inputs, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = opType, Name = Unique(opType) };
        node.Input.AddRange(inputs);
        node.Output.Add(node.Name + "_out");
        node.Attribute.AddRange(attributes);
        graph.Node.Add(node);
        return node.Output[0];
    }

    /// <summary>Renames the output of the last node, so that a graph output has a readable name.</summary>
    public string NameLastOutput(string name)
    {
        graph.Node[^1].Output[0] = name;
        return name;
    }

    public static AttributeProto Ints(string name, params long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    public static AttributeProto Int(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public ModelProto Build(IReadOnlyDictionary<string, string> metadata)
    {
        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "adaptive zoo",
            ProducerVersion = "1",
            ModelVersion = 1,
            Graph = graph,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = OpsetVersion });
        foreach (var (key, value) in metadata) model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        return model;
    }

    string Unique(string prefix) => $"{prefix}_{counter++}";

    static ValueInfoProto ValueInfo(string name, long?[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var dim in dims)
            shape.Dim.Add(dim is { } size ? new TensorShapeProto.Types.Dimension { DimValue = size } : new TensorShapeProto.Types.Dimension { DimParam = "batch" });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
        };
    }
}
