using Adaptive.Experiments.Zoo.Onnx;
using Google.Protobuf;

namespace Adaptive.Tests.Support;

/// <summary>
/// Hand-built one-node ONNX models whose output is their input (ONNX Identity), of any element type and
/// shape: a dimension given as a string is symbolic (dynamic), a number is fixed. With a dynamic dimension
/// besides the batch one, requests of several shapes are all valid, which is what batching must not mix.
/// </summary>
public static class IdentityModels
{
    /// <summary>ONNX's code for FLOAT (TensorProto.DataType); the others are in DataTypeTests.</summary>
    public const int Float = 1;

    /// <param name="type">The element type, as ONNX's TensorProto.DataType numbers it.</param>
    public static string Write(string directory, string fileName, int type, params object[] dims)
    {
        var graph = new GraphProto { Name = "identity" };
        graph.Input.Add(ValueInfo("x", type, dims));
        graph.Output.Add(ValueInfo("y", type, dims));
        var node = new NodeProto { OpType = "Identity", Name = "identity" };
        node.Input.Add("x");
        node.Output.Add("y");
        graph.Node.Add(node);
        var model = new ModelProto { IrVersion = 8, ProducerName = "adaptive tests", Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        string path = Path.Combine(directory, fileName);
        using var stream = File.Create(path);
        model.WriteTo(stream);
        return path;
    }

    static ValueInfoProto ValueInfo(string name, int type, object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var dim in dims)
            shape.Dim.Add(dim is string symbol
                ? new TensorShapeProto.Types.Dimension { DimParam = symbol }
                : new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(dim, System.Globalization.CultureInfo.InvariantCulture) });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = type, Shape = shape } } };
    }
}
