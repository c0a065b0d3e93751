namespace Adaptive.ModelServer.Routing;

/// <summary>
/// Outlier ejection, as Envoy does it: a variant (by endpoint) that fails <see cref="FailuresToEject"/> times
/// in a row (no connection, a reset, a 5xx, no answer in time) is ejected, and gets no traffic until its
/// back-off has passed and a probe of its readiness succeeds; each ejection in a row doubles the back-off,
/// up to <see cref="MaxEjection"/>. A success starts its count over. Kept across configuration reloads.
/// </summary>
public sealed class VariantHealth(TimeProvider time)
{
    public const int FailuresToEject = 3;
    public static readonly TimeSpan FirstEjection = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan MaxEjection = TimeSpan.FromSeconds(30);

    sealed class State
    {
        public int ConsecutiveFailures;
        public int Ejections;
        public DateTimeOffset? EjectedUntil;
    }

    readonly Dictionary<string, State> states = [];
    readonly Lock gate = new();

    /// <summary>Whether the endpoint takes traffic: not ejected.</summary>
    public bool IsUsable(string endpoint)
    {
        lock (gate) return !states.TryGetValue(endpoint, out var state) || state.EjectedUntil is null;
    }

    public void Succeeded(string endpoint)
    {
        lock (gate)
            if (states.TryGetValue(endpoint, out var state) && state.EjectedUntil is null)
            {
                state.ConsecutiveFailures = 0;
                state.Ejections = 0;
            }
    }

    /// <summary>Counts a failure; true when it ejects the endpoint.</summary>
    public bool Failed(string endpoint)
    {
        lock (gate)
        {
            if (!states.TryGetValue(endpoint, out var state)) states[endpoint] = state = new State();
            if (state.EjectedUntil is not null || ++state.ConsecutiveFailures < FailuresToEject) return false;
            Eject(state);
            return true;
        }
    }

    void Eject(State state)
    {
        var backOff = TimeSpan.FromTicks(Math.Min(MaxEjection.Ticks, FirstEjection.Ticks << Math.Min(state.Ejections, 20)));
        state.Ejections++;
        state.EjectedUntil = time.GetUtcNow() + backOff;
    }

    /// <summary>The ejected endpoints whose back-off has passed: to be probed.</summary>
    public IReadOnlyList<string> DueForProbe()
    {
        var now = time.GetUtcNow();
        lock (gate) return [.. states.Where(s => s.Value.EjectedUntil <= now).Select(s => s.Key)];
    }

    /// <summary>A probe's result: ready takes traffic again (its failures counted from zero), not ready is ejected for longer.</summary>
    public void Probed(string endpoint, bool ready)
    {
        lock (gate)
        {
            if (!states.TryGetValue(endpoint, out var state) || state.EjectedUntil is null) return;
            if (!ready) Eject(state);
            else
            {
                state.EjectedUntil = null;
                state.ConsecutiveFailures = 0;
            }
        }
    }
}
