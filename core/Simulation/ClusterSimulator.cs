using Adaptive.Core.Planning;
using Adaptive.Core.Queueing;
using Adaptive.Core.Routing;
using Adaptive.Core.Workloads;

namespace Adaptive.Core.Simulation;

/// <summary>
/// A running (stage, variant, hardware class, batch) in the simulated cluster: replicas that batch, and its
/// weight in the stage's split. <see cref="StartupSeconds"/> is how long a new replica takes before it serves
/// (pod start and model load); <see cref="Accuracy"/> and <see cref="CostPerReplica"/> feed the report.
/// </summary>
public sealed record SimulatedGroup(string Variant, string Hardware, int Replicas, int Batch, IReadOnlyList<ProfilePoint> Profile, double Weight)
{
    public double Accuracy { get; init; }
    public double CostPerReplica { get; init; }
    public double StartupSeconds { get; init; }

    /// <summary>The stage's max queue delay, where it has its own; else <see cref="SimulationOptions.MaxQueueDelayMs"/>.</summary>
    public double? MaxQueueDelayMs { get; init; }

    /// <summary>
    /// Where every replica of the cluster shares one machine (<c>replay --live</c>): the profile measured with 1, 2, …
    /// replicas busy at once, and a batch's service time follows the one for the replicas busy (or starting) as it
    /// starts (the last beyond). Null where each replica has cores of its own: <see cref="Profile"/>.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<ProfilePoint>>? ProfilesWhenBusy { get; init; }

    public string Key => KeyOf(Variant, Hardware, Batch);

    public static string KeyOf(string variant, string hardware, int batch) => $"{variant}@{hardware}/b{batch}";
}

public sealed record SimulatedStage(string Name, IReadOnlyList<SimulatedGroup> Groups);

/// <param name="SloMs">The SLO: a request served past it, end to end, is late. Each stage gets what is left of it less what the later
/// stages have been taking (<see cref="StageDeadlines"/>, as the router sends it): a stage refuses what would end past that, and drops what is still queued at it then.</param>
/// <param name="QueueCapacity">Requests each ready replica's queue holds; beyond it arrivals are rejected.</param>
public sealed record SimulationOptions(double SloMs, double MaxQueueDelayMs, int QueueCapacity, int Seed)
{
    /// <summary>How a request's accuracy combines the accuracies of the variants that served its stages.</summary>
    public AccuracyMethod AccuracyMethod { get; init; } = AccuracyMethod.Sum;

    /// <summary>
    /// What the request path adds at every stage outside the model: the router's hop to a replica and back
    /// (two HTTP exchanges and the body's copies), in ms. The request reaches the stage's queue this much later.
    /// </summary>
    public double HopMs { get; init; }
}

/// <summary>A change of configuration the controller asks for.</summary>
/// <param name="Recreate">
/// False: make-before-break, as the operator does it: a stage's traffic moves to its new groups only once
/// all their replicas are ready, and replaced groups drain afterwards. True: the running replicas
/// are replaced at once (as a pod resize by eviction does), so the stage serves nothing until the new ones start.
/// </param>
public sealed record Reconfiguration(IReadOnlyList<SimulatedStage> Stages, bool Recreate = false);

/// <summary>
/// What the router's counters show, per second so far: requests that arrived, requests answered (in the second
/// they left, whatever the outcome), and of those the ones that missed the SLO (late, refused or expired).
/// </summary>
public sealed record SimulationObservations(IReadOnlyList<int> Arrivals, IReadOnlyList<int> Answered, IReadOnlyList<int> Missed);

/// <summary>Called every interval of simulated time with what was observed so far.</summary>
public delegate Reconfiguration? SimulationController(double nowSeconds, SimulationObservations observed);

public enum RequestOutcome
{
    /// <summary>Served within the SLO.</summary>
    OnTime,
    /// <summary>Served after the SLO.</summary>
    Late,
    /// <summary>Refused on arrival: the queue was full, the work ahead would make it miss its deadline, or the stage had no ready replica.</summary>
    Rejected,
    /// <summary>Dropped from a queue when its deadline had passed, as the model server does.</summary>
    Expired,
}

/// <param name="LatencyMs">Time in the pipeline until served or dropped.</param>
/// <param name="Accuracy">The combined accuracy of the variants that served it; 0 when not served.</param>
public readonly record struct RequestRecord(double ArrivalSeconds, double LatencyMs, double Accuracy, RequestOutcome Outcome)
{
    /// <summary>It got an answer: on time or late.</summary>
    public bool Served => Outcome is RequestOutcome.OnTime or RequestOutcome.Late;
}

/// <summary>The cluster at the start of one second: replicas (starting, serving or draining) per "stage/variant@hardware/bN", and their cost rate.</summary>
public sealed record SecondSample(double CostPerSecond, IReadOnlyDictionary<string, int> Replicas);

/// <summary>
/// A group's batches, as a model server's metrics count them: how many, their service time in all, the requests they held
/// and those requests' wait in the queue in all.
/// </summary>
public sealed record GroupCalls(long Calls, double ServiceMs, long Requests, double QueueWaitMs)
{
    public double MeanMs => Calls == 0 ? 0 : ServiceMs / Calls;
    public double MeanQueueWaitMs => Requests == 0 ? 0 : QueueWaitMs / Requests;
}

/// <summary>
/// What happened to every request, one record each: on time, late, rejected or expired. The counts are
/// derived from the records, so every request is counted exactly once by construction.
/// </summary>
/// <param name="calls">The batches each group ran, per "stage/variant@hardware/bN"; empty where they were not observed.</param>
public sealed class SimulationResult(IReadOnlyList<RequestRecord> requests, double meanInSystem, double durationSeconds,
    IReadOnlyList<int> arrivalsPerSecond, IReadOnlyList<SecondSample> seconds, IReadOnlyDictionary<string, GroupCalls>? calls = null)
{
    public IReadOnlyList<RequestRecord> Requests { get; } = requests;
    /// <summary>Time-averaged requests in the pipeline (NaN where it was not observed).</summary>
    public double MeanInSystem { get; } = meanInSystem;
    public double DurationSeconds { get; } = durationSeconds;
    public IReadOnlyList<int> ArrivalsPerSecond { get; } = arrivalsPerSecond;
    public IReadOnlyList<SecondSample> Seconds { get; } = seconds;
    public IReadOnlyDictionary<string, GroupCalls> Calls { get; } = calls ?? new Dictionary<string, GroupCalls>();

    public int Arrived => Requests.Count;
    /// <summary>Answered, on time or late.</summary>
    public int Served => Arrived - Rejected - Expired;
    public int Late { get; } = requests.Count(r => r.Outcome == RequestOutcome.Late);
    public int Rejected { get; } = requests.Count(r => r.Outcome == RequestOutcome.Rejected);
    public int Expired { get; } = requests.Count(r => r.Outcome == RequestOutcome.Expired);

    /// <summary>The latencies of the served requests, in the order they finished.</summary>
    public IReadOnlyList<double> LatenciesMs { get; } = [.. requests.Where(r => r.Served).Select(r => r.LatencyMs)];

    public double ViolationRate => Arrived == 0 ? 0 : (double)(Arrived - (Served - Late)) / Arrived;

    /// <summary>Replica-seconds weighted by each class's cost, over the workload's seconds.</summary>
    public double Cost => Seconds.Sum(s => s.CostPerSecond);
}

/// <summary>
/// A discrete-event simulation of a pipeline: Poisson arrivals at the workload's per-second rate, the router's
/// smooth weighted split per stage, a bounded queue per group, replicas that take a batch when it is full or
/// its oldest request has waited the max queue delay, and service times drawn from the profile of the
/// smallest profiled batch that holds the requests (<see cref="ServiceTime"/>: mean batch / throughput,
/// p99 the profiled latency). A controller may reconfigure it every interval: new
/// replicas serve after their start-up delay, removed ones finish their batch, and replaced groups drain their
/// queue before they go. Runs until every request has left.
/// </summary>
public sealed class ClusterSimulator
{
    /// <summary>A fixed configuration, ready from the start.</summary>
    public static SimulationResult Run(IReadOnlyList<SimulatedStage> stages, Workload workload, SimulationOptions options) =>
        new ClusterSimulator(stages, workload, options).Run(null, 0);

    /// <summary>Starts from <paramref name="initial"/> (ready at time 0) and asks <paramref name="controller"/> every <paramref name="intervalSeconds"/>.</summary>
    public static SimulationResult Run(IReadOnlyList<SimulatedStage> initial, Workload workload, SimulationOptions options,
        SimulationController controller, double intervalSeconds)
    {
        if (!(intervalSeconds > 0)) throw new ArgumentOutOfRangeException(nameof(intervalSeconds), intervalSeconds, "the control interval must be greater than 0");
        return new ClusterSimulator(initial, workload, options).Run(controller, intervalSeconds);
    }

    enum ReplicaState { Starting, Idle, Busy, Gone }

    sealed class Replica(ReplicaState state)
    {
        public ReplicaState State { get; set; } = state;
        /// <summary>Scaled down while busy: leaves when its batch is done.</summary>
        public bool Removing { get; set; }
        /// <summary>When its batch should be done, at the batch's mean service time: what the model server expects, not the draw.</summary>
        public double ExpectedDone { get; set; }
    }

    sealed class Request(double arrival)
    {
        public double Arrival { get; } = arrival;
        public int Stage { get; set; }
        /// <summary>When the router sent it to its current stage.</summary>
        public double StageEntered { get; set; }
        /// <summary>Until when its current stage's model server may keep it (<see cref="StageDeadlines"/>).</summary>
        public double StageDeadline { get; set; }
        public double AccuracySum { get; set; }
        public double AccuracyProduct { get; set; } = 1;
    }

    /// <summary>The batches run by the groups of one key, whichever group object ran them.</summary>
    sealed class CallCounter(string name)
    {
        /// <summary>"stage/variant@hardware/bN".</summary>
        public string Name { get; } = name;
        public long Calls { get; private set; }
        public double ServiceMs { get; private set; }
        public long Requests { get; private set; }
        public double QueueWaitMs { get; private set; }

        public void Add(double serviceMs, int requests, double queueWaitMs)
        {
            Calls++;
            ServiceMs += serviceMs;
            Requests += requests;
            QueueWaitMs += queueWaitMs;
        }
    }

    sealed class Group(int stage, SimulatedGroup spec, CallCounter calls)
    {
        public int Stage { get; } = stage;
        public CallCounter Calls { get; } = calls;
        public SimulatedGroup Spec { get; set; } = spec;
        public Queue<(Request Request, double Enqueued)> Queue { get; } = new();
        public List<Replica> Replicas { get; } = [];
        /// <summary>No longer routed to: drains its queue, then its replicas go.</summary>
        public bool Retired { get; set; }
        public bool TimerSet { get; set; }
        /// <summary>Its weight in the stage's split, set when traffic moves to it: a group that a pending change resizes keeps its share until then.</summary>
        public double RoutedWeight { get; set; }
        /// <summary>Replicas that run or start and are not being removed.</summary>
        public int Live => Replicas.Count(r => r.State != ReplicaState.Gone && !r.Removing);
        public int Ready => Replicas.Count(r => r.State is ReplicaState.Idle or ReplicaState.Busy && !r.Removing);
    }

    sealed class Stage(string name)
    {
        public string Name { get; } = name;
        public List<Group> Groups { get; } = [];
        public List<Group> Routes { get; set; } = [];
        /// <summary>Splits the stage's requests among <see cref="Routes"/> by weight, as the router does.</summary>
        public WeightedChooser<Group>? Chooser { get; set; }
        /// <summary>Groups traffic moves to once all their replicas are ready (make-before-break).</summary>
        public List<Group>? Pending { get; set; }
    }

    readonly Workload workload;
    readonly SimulationOptions options;
    readonly Random random;
    readonly Stage[] stages;
    readonly PriorityQueue<Action, (double, long)> events = new();
    long sequence;
    double now;
    int inSystem;
    double area, lastChange;
    readonly List<RequestRecord> records = [];
    readonly int[] arrivalsPerSecond, answeredPerSecond, missedPerSecond;
    readonly StageDeadlines deadlines;
    readonly List<SecondSample> samples = [];
    readonly Dictionary<string, CallCounter> calls = [];

    ClusterSimulator(IReadOnlyList<SimulatedStage> initial, Workload workload, SimulationOptions options)
    {
        if (initial.Count == 0) throw new ArgumentException("a pipeline has at least one stage", nameof(initial));
        this.workload = workload;
        this.options = options;
        random = new Random(options.Seed);
        arrivalsPerSecond = new int[workload.Seconds];
        answeredPerSecond = new int[workload.Seconds];
        missedPerSecond = new int[workload.Seconds];
        stages = initial.Select(s => new Stage(s.Name)).ToArray();
        deadlines = new StageDeadlines(stages.Length);
        for (int i = 0; i < stages.Length; i++)
        {
            foreach (var spec in initial[i].Groups)
            {
                var group = NewGroup(i, spec);
                for (int r = 0; r < spec.Replicas; r++) group.Replicas.Add(new Replica(ReplicaState.Idle));
                stages[i].Groups.Add(group);
            }
            Route(stages[i], stages[i].Groups);
        }
    }

    Group NewGroup(int stage, SimulatedGroup spec)
    {
        string name = $"{stages[stage].Name}/{spec.Key}";
        if (!calls.TryGetValue(name, out var counter)) calls[name] = counter = new CallCounter(name);
        return new Group(stage, spec, counter);
    }

    void At(double time, Action action) => events.Enqueue(action, (time, sequence++));

    SimulationResult Run(SimulationController? controller, double intervalSeconds)
    {
        ScheduleArrivals();
        for (int second = 0; second < workload.Seconds; second++) At(second, Sample);
        if (controller != null)
            for (double t = intervalSeconds; t < workload.Seconds; t += intervalSeconds)
                At(t, () =>
                {
                    int seconds = Math.Min((int)now, workload.Seconds);
                    var observed = new SimulationObservations(new ArraySegment<int>(arrivalsPerSecond, 0, seconds),
                        new ArraySegment<int>(answeredPerSecond, 0, seconds), new ArraySegment<int>(missedPerSecond, 0, seconds));
                    if (controller(now, observed) is { } change) Reconfigure(change);
                });
        while (events.TryDequeue(out var action, out var key))
        {
            now = key.Item1;
            action();
        }
        return new SimulationResult(records, now > 0 ? area / now : 0, now, arrivalsPerSecond, samples,
            calls.Values.ToDictionary(c => c.Name, c => new GroupCalls(c.Calls, c.ServiceMs, c.Requests, c.QueueWaitMs)));
    }

    /// <summary>A Poisson process whose rate changes every second.</summary>
    void ScheduleArrivals()
    {
        for (int second = 0; second < workload.Seconds; second++)
        {
            double rate = workload.RatePerSecond[second];
            if (rate <= 0) continue;
            for (double t = second + Exponential(rate); t < second + 1; t += Exponential(rate))
            {
                double arrival = t;
                At(arrival, () =>
                {
                    arrivalsPerSecond[(int)arrival]++;
                    Count(+1);
                    Enter(new Request(arrival), 0);
                });
            }
        }
    }

    void Count(int delta)
    {
        area += inSystem * (now - lastChange);
        lastChange = now;
        inSystem += delta;
    }

    void Sample()
    {
        var replicas = new Dictionary<string, int>();
        double cost = 0;
        foreach (var stage in stages)
            foreach (var group in stage.Groups)
            {
                int count = group.Replicas.Count(r => r.State != ReplicaState.Gone);
                if (count == 0) continue;
                string key = group.Calls.Name;
                replicas[key] = replicas.GetValueOrDefault(key) + count;
                cost += count * group.Spec.CostPerReplica;
            }
        samples.Add(new SecondSample(cost, replicas));
    }

    void Enter(Request request, int stageIndex)
    {
        request.StageEntered = now;
        double leftMs = options.SloMs - (now - request.Arrival) * 1000;
        request.StageDeadline = now + (options.HopMs + deadlines.TimeForMs(stageIndex, leftMs)) / 1000;
        if (options.HopMs > 0) At(now + options.HopMs / 1000, () => Queue(request, stageIndex));
        else Queue(request, stageIndex);
    }

    void Queue(Request request, int stageIndex)
    {
        request.Stage = stageIndex;
        var stage = stages[stageIndex];
        var group = stage.Chooser?.Next();
        int ready = group?.Ready ?? 0;
        if (group == null || ready == 0 || group.Queue.Count >= options.QueueCapacity * ready || !DeadlineReachable(group, request, ready))
        {
            Finish(request, RequestOutcome.Rejected);
            return;
        }
        group.Queue.Enqueue((request, now));
        Dispatch(group);
    }

    void Dispatch(Group group)
    {
        DropExpired(group);
        double maxQueueDelayMs = group.Spec.MaxQueueDelayMs ?? options.MaxQueueDelayMs;
        while (group.Queue.Count > 0 && group.Replicas.FirstOrDefault(r => r.State == ReplicaState.Idle) is { } replica)
        {
            double waited = (now - group.Queue.Peek().Enqueued) * 1000;
            if (group.Queue.Count < group.Spec.Batch && waited < maxQueueDelayMs - 1e-6) // tolerance: the timer fires at the deadline
            {
                if (!group.TimerSet)
                {
                    group.TimerSet = true;
                    At(group.Queue.Peek().Enqueued + maxQueueDelayMs / 1000, () =>
                    {
                        group.TimerSet = false;
                        Dispatch(group);
                    });
                }
                return;
            }
            var batch = new List<Request>();
            double queueWaitMs = 0;
            while (batch.Count < group.Spec.Batch && group.Queue.Count > 0)
            {
                var (request, enqueued) = group.Queue.Dequeue();
                batch.Add(request);
                queueWaitMs += (now - enqueued) * 1000;
            }
            replica.State = ReplicaState.Busy;
            var spec = group.Spec;
            var serviceTime = ServiceTimeOf(spec, batch.Count, BusyReplicas(spec));
            replica.ExpectedDone = now + serviceTime.MeanMs / 1000;
            double serviceMs = serviceTime.Sample(random);
            group.Calls.Add(serviceMs, batch.Count, queueWaitMs);
            At(now + serviceMs / 1000, () =>
            {
                replica.State = replica.Removing ? ReplicaState.Gone : ReplicaState.Idle;
                foreach (var request in batch)
                {
                    request.AccuracySum += spec.Accuracy;
                    request.AccuracyProduct *= spec.Accuracy;
                    Leave(request);
                }
                Dispatch(group);
            });
        }
        if (group.Retired && group.Queue.Count == 0) RemoveIdle(group);
    }

    /// <summary>
    /// The model server refuses a request at admission when the work ahead of it would make it miss its deadline
    /// (<c>DynamicBatcher.ExpectedWait</c>; the time the router gave the stage, <see cref="StageDeadlines"/>), so
    /// that under overload the requests it takes stay on time. Here, as there, at mean service times: the batches
    /// ahead of it go, in turn, to the replica that is free first, and a batch that would not be full waits the fill delay.
    /// </summary>
    bool DeadlineReachable(Group group, Request request, int ready)
    {
        int batch = group.Spec.Batch;
        int queued = group.Queue.Count;
        var free = group.Replicas.Where(r => r.State is ReplicaState.Idle or ReplicaState.Busy && !r.Removing)
            .Select(r => r.State == ReplicaState.Busy ? Math.Max(now, r.ExpectedDone) : now).Order().ToArray();
        int ahead = queued / batch; // full batches before the one this request joins
        int busy = Math.Max(1, BusyReplicas(group.Spec));
        double fullBatchSeconds = ServiceTimeOf(group.Spec, batch, busy).MeanMs / 1000;
        double starts = free[ahead % ready] + ahead / ready * fullBatchSeconds;
        double done = starts + ServiceTimeOf(group.Spec, queued % batch + 1, busy).MeanMs / 1000;
        if (queued % batch + 1 < batch) done += (group.Spec.MaxQueueDelayMs ?? options.MaxQueueDelayMs) / 1000;
        return done <= request.StageDeadline;
    }

    /// <summary>The model server drops a queued request whose deadline has passed rather than serve it late.</summary>
    void DropExpired(Group group)
    {
        while (group.Queue.Count > 0 && now > group.Queue.Peek().Request.StageDeadline)
            Finish(group.Queue.Dequeue().Request, RequestOutcome.Expired);
    }

    void Leave(Request request)
    {
        deadlines.Answered(request.Stage, (now - request.StageEntered) * 1000);
        if (request.Stage + 1 < stages.Length)
        {
            Enter(request, request.Stage + 1);
            return;
        }
        Finish(request, (now - request.Arrival) * 1000 > options.SloMs ? RequestOutcome.Late : RequestOutcome.OnTime);
    }

    void Finish(Request request, RequestOutcome outcome)
    {
        double latencyMs = (now - request.Arrival) * 1000;
        var record = new RequestRecord(request.Arrival, latencyMs, 0, outcome);
        if (record.Served)
        {
            record = record with
            {
                Accuracy = options.AccuracyMethod switch
                {
                    AccuracyMethod.Sum => request.AccuracySum,
                    AccuracyMethod.Average => request.AccuracySum / stages.Length,
                    AccuracyMethod.Product => request.AccuracyProduct,
                    _ => throw new ArgumentOutOfRangeException(nameof(options), options.AccuracyMethod, "unknown accuracy method"),
                },
            };
        }
        records.Add(record);
        if ((int)now < workload.Seconds)
        {
            answeredPerSecond[(int)now]++;
            if (outcome != RequestOutcome.OnTime) missedPerSecond[(int)now]++;
        }
        Count(-1);
    }

    void Reconfigure(Reconfiguration change)
    {
        if (change.Stages.Count != stages.Length)
            throw new ArgumentException($"the reconfiguration has {change.Stages.Count} stages, the pipeline {stages.Length}", nameof(change));
        for (int i = 0; i < stages.Length; i++)
        {
            var stage = stages[i];
            var desired = new List<Group>();
            foreach (var spec in change.Stages[i].Groups)
            {
                var group = change.Recreate ? null : stage.Groups.FirstOrDefault(g => g.Spec.Key == spec.Key && !desired.Contains(g));
                if (group == null)
                {
                    group = NewGroup(i, spec);
                    stage.Groups.Add(group);
                }
                group.Spec = spec;
                group.Retired = false;
                Resize(group, change.Recreate ? spec.Replicas : Math.Max(spec.Replicas, group.Live)); // a shrink waits for the traffic to move (Route)
                desired.Add(group);
            }
            if (change.Recreate)
                Route(stage, desired);
            else
            {
                stage.Pending = desired;
                SwitchWhenReady(stage);
            }
        }
    }

    /// <summary>Adds replicas that start after the start-up delay, or removes the surplus: starting ones first, then idle, then busy ones after their batch.</summary>
    void Resize(Group group, int target)
    {
        var live = group.Replicas.Where(r => r.State != ReplicaState.Gone && !r.Removing).ToList();
        for (int added = live.Count; added < target; added++)
        {
            var replica = new Replica(ReplicaState.Starting);
            group.Replicas.Add(replica);
            At(now + group.Spec.StartupSeconds, () =>
            {
                if (replica.State != ReplicaState.Starting) return; // removed while starting
                replica.State = ReplicaState.Idle;
                if (group.Retired) RemoveIdle(group);
                else Dispatch(group);
                SwitchWhenReady(stages[group.Stage]);
            });
        }
        foreach (var replica in live.OrderBy(r => r.State switch { ReplicaState.Starting => 0, ReplicaState.Idle => 1, _ => 2 }).Take(Math.Max(0, live.Count - target)))
        {
            if (replica.State == ReplicaState.Busy) replica.Removing = true;
            else replica.State = ReplicaState.Gone;
        }
        group.Replicas.RemoveAll(r => r.State == ReplicaState.Gone);
    }

    void SwitchWhenReady(Stage stage)
    {
        if (stage.Pending is { } pending && pending.All(g => g.Ready >= g.Spec.Replicas)) Route(stage, pending);
    }

    /// <summary>Sends the stage's traffic to <paramref name="groups"/>; every other group of the stage drains and goes.</summary>
    void Route(Stage stage, List<Group> groups)
    {
        stage.Routes = groups;
        foreach (var group in groups)
        {
            group.RoutedWeight = group.Spec.Weight;
            Resize(group, group.Spec.Replicas);
        }
        stage.Chooser = groups.Count == 0 ? null : new WeightedChooser<Group>(groups, g => g.RoutedWeight);
        stage.Pending = null;
        foreach (var group in stage.Groups.Where(g => !groups.Contains(g)))
        {
            group.Retired = true;
            foreach (var replica in group.Replicas.Where(r => r.State == ReplicaState.Starting)) replica.State = ReplicaState.Gone;
            Dispatch(group);
            if (group.Replicas.All(r => r.State == ReplicaState.Gone))
                while (group.Queue.Count > 0) Finish(group.Queue.Dequeue().Request, RequestOutcome.Rejected); // nothing left to serve them
        }
        stage.Groups.RemoveAll(g => g.Retired && g.Queue.Count == 0 && g.Replicas.All(r => r.State == ReplicaState.Gone));
    }

    /// <summary>A retired group whose queue is empty lets its idle replicas go; busy ones go after their batch.</summary>
    void RemoveIdle(Group group)
    {
        foreach (var replica in group.Replicas)
        {
            if (replica.State is ReplicaState.Idle or ReplicaState.Starting) replica.State = ReplicaState.Gone;
            else if (replica.State == ReplicaState.Busy) replica.Removing = true;
        }
        group.Replicas.RemoveAll(r => r.State == ReplicaState.Gone);
    }

    /// <summary>
    /// The service time of the smallest profiled batch that holds <paramref name="requests"/> (the largest when
    /// none does), from the profile for <paramref name="busy"/> replicas busy at once where the replicas share a machine.
    /// </summary>
    static ServiceTime ServiceTimeOf(SimulatedGroup group, int requests, int busy)
    {
        var profile = group.ProfilesWhenBusy is { Count: > 0 } shared ? shared[Math.Min(busy, shared.Count) - 1] : group.Profile;
        return ServiceTime.Of(profile.Where(p => p.Batch >= requests).MinBy(p => p.Batch) ?? profile.MaxBy(p => p.Batch)!);
    }

    /// <summary>
    /// Replicas taking the machine's CPU now, in every stage, where they share a machine with <paramref name="group"/>'s
    /// (else 0: it does not matter): those running a batch, and those starting, whose process start and model load
    /// take CPU too (live, ipa's start-ups on 2 cores were where its requests were late).
    /// </summary>
    int BusyReplicas(SimulatedGroup group) => group.ProfilesWhenBusy is null ? 0
        : stages.Sum(stage => stage.Groups.Sum(g => g.Replicas.Count(r => r.State is ReplicaState.Busy or ReplicaState.Starting)));

    double Exponential(double rate) => -Math.Log(1 - random.NextDouble()) / rate;
}
