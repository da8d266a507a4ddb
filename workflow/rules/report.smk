# Results: memory and time profiles (Fig. 3), the tables (Table 1 and the
# extended table), the figures (Figs. 1-3) and the tiled one-call check.
PROFILE = config["profile"]
FIGURES = plan.figure_inputs()


rule profile:
    input:
        prior=layout.PRIOR.format(prior=PROFILE["prior"]),
        calibration=layout.CALIBRATION.format(prior=PROFILE["prior"]),
        data=plan.eval_files()[0],
    output:
        layout.PROFILE,
    log:
        f"{LOGS}/profile/{{solver}}.log",
    benchmark:
        f"{LOGS}/benchmarks/profile/{{solver}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: PROFILE["threads"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        gpu=gpus_for(1),
    params:
        rule="profile",
        sizes=" ".join(str(s) for s in PROFILE["sizes"]),
        image_sizes=" ".join(str(s) for s in PROFILE["image_sizes"]),
        image_size=PROFILE["image_size"],
        sweep_patch=PROFILE["sweep_patch"],
        steps=PROFILE["steps"],
        budget=INFER.get("memory_budget", "25%"),
        device=config["device"],
        precision=INFER["precision"],
        code=command_code("profile"),
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp profile --output {output:q} --prior {input.prior:q} --eval {input.data:q}"
        " --solvers {wildcards.solver} --image-size {params.image_size}"
        " --sizes {params.sizes} --image-sizes {params.image_sizes}"
        " --sweep-patch {params.sweep_patch} --steps {params.steps}"
        " --memory-budget {params.budget:q} --calibration {input.calibration:q}"
        " --device {params.device} --precision {params.precision}"
        " --threads {threads} > {log} 2>&1"


# The paper's scale with no data and no training (snakemake paper_profile): a
# random-weight network of config/paper.yaml's size; its own target, outside `all`.
PAPER_SCALE = config["paper_profile"]


rule paper_scale_profile:
    input:
        workflow_path(PAPER_SCALE["network_config"]),
    output:
        csv=report(
            layout.PAPER_SCALE,
            caption="../report/paper_scale.rst",
            category="Profiles",
        ),
        summary=layout.PAPER_SCALE_SUMMARY,
        calibration=layout.PAPER_SCALE_CALIBRATION,
    log:
        f"{LOGS}/profile/paper_scale.log",
    benchmark:
        f"{LOGS}/benchmarks/profile/paper_scale.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: PAPER_SCALE["threads"]
    resources:
        mem_mb=lambda wc, attempt: 24000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        gpu=gpus_for(1),
    params:
        rule="paper_scale_profile",
        solvers=" ".join(PAPER_SCALE["solvers"]),
        image_sizes=" ".join(str(s) for s in PAPER_SCALE["image_sizes"]),
        sizes=" ".join(str(s) for s in PAPER_SCALE["sizes"]),
        budget=PAPER_SCALE["memory_budget"],
        limit=PAPER_SCALE["memory_limit"],
        chunks=PAPER_SCALE["sampled_chunks"],
        seed=config["seed"],
        device=config["device"],
        precision=INFER["precision"],
        code=command_code("paper-profile"),
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp paper-profile --output {output.csv:q} --network-config {input:q}"
        " --calibration {output.calibration:q} --summary {output.summary:q}"
        " --solvers {params.solvers} --image-sizes {params.image_sizes}"
        " --sizes {params.sizes} --memory-budget {params.budget:q}"
        " --memory-limit {params.limit:q} --sampled-chunks {params.chunks}"
        " --seed {params.seed} --device {params.device} --precision {params.precision}"
        " --threads {threads} > {log} 2>&1"


rule figure_paper_scale:
    input:
        layout.PAPER_SCALE,
    output:
        png=report(
            f"{layout.FIGURES}/paper_scale.png",
            caption="../report/paper_scale.rst",
            category="Figures",
        ),
        pdf=f"{layout.FIGURES}/paper_scale.pdf",
    log:
        f"{LOGS}/figures/paper_scale.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=command_code("figure"),
        stem=lambda wc, output: os.path.splitext(output.png)[0],
    shell:
        "patchpnp figure paper-scale {input:q} --out-stem {params.stem:q} > {log} 2>&1"


rule paper_profile:
    input:
        rules.figure_paper_scale.output,
        layout.PAPER_SCALE_SUMMARY,


# The priors the claims compare: the first of each training scheme.
CLAIM_PRIORS = {p["scheme"]: n for n, p in reversed(config["priors"].items())}
# Claim (d) is judged on the paper-scale profile once snakemake paper_profile has written
# it (its own target: the tables never wait for it).
PAPER_SCALE_INPUT = [layout.PAPER_SCALE] if os.path.exists(layout.PAPER_SCALE) else []


rule tables:
    input:
        metrics=plan.cell_files("metrics"),
        profiles=expand(layout.PROFILE, solver=PROFILE["solvers"]),
        paper_scale=PAPER_SCALE_INPUT,
        # claim (b) per solver: deepinv's cells, when snakemake solvers is part of all
        claims_metrics=solvers_plan.deepinv_metrics_files() if SOLVERS["in_all"] else [],
    output:
        table1=report(
            f"{layout.TABLES}/{layout.TABLE1_STEM}.csv",
            caption="../report/table1.rst",
            category="Tables",
        ),
        table1_md=f"{layout.TABLES}/{layout.TABLE1_STEM}.md",
        table1_tex=f"{layout.TABLES}/{layout.TABLE1_STEM}.tex",
        extended=report(
            f"{layout.TABLES}/{layout.EXTENDED_STEM}.csv",
            caption="../report/extended.rst",
            category="Tables",
        ),
        extended_md=f"{layout.TABLES}/{layout.EXTENDED_STEM}.md",
        claims=report(
            f"{layout.TABLES}/{layout.CLAIMS_STEM}.csv",
            caption="../report/claims.rst",
            category="Tables",
        ),
        claims_md=f"{layout.TABLES}/{layout.CLAIMS_STEM}.md",
        resolution=report(
            f"{layout.TABLES}/{layout.RESOLUTION_STEM}.csv",
            caption="../report/resolution.rst",
            category="Tables",
        ),
        resolution_md=f"{layout.TABLES}/{layout.RESOLUTION_STEM}.md",
    log:
        f"{LOGS}/tables.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        side=DATA["image_size"],
        seed=config["seed"],
        margin=config.get("claims", {}).get("margin_db", 0.5),
        plateau=config.get("claims", {}).get("plateau_fraction", 0.1),
        whole=CLAIM_PRIORS.get("whole", "whole"),
        patch=CLAIM_PRIORS.get("patch", "patch"),
        profiled=PROFILE["prior"],
        bars=f"{RESOLUTION['bars']['cell_db']} {RESOLUTION['bars']['pooled_db']}",
        code=command_code("tables"),
        out_dir=lambda wc, output: os.path.dirname(output.table1),
        claims_metrics=lambda wc, input: (
            "--claims-metrics " + " ".join(input.claims_metrics)
            if input.claims_metrics
            else ""
        ),
        paper_scale=lambda wc, input: (
            f"--paper-scale {input.paper_scale}" if input.paper_scale else ""
        ),
    shell:
        "patchpnp tables {input.metrics:q} --profiles {input.profiles:q}"
        " --out-dir {params.out_dir:q} --seed {params.seed}"
        " --image-shape {params.side} {params.side} --margin-db {params.margin}"
        " --plateau-fraction {params.plateau} {params.paper_scale}"
        " --whole-prior {params.whole} --patch-prior {params.patch}"
        " --profile-prior {params.profiled} {params.claims_metrics}"
        " --bars {params.bars} > {log} 2>&1"


rule figure_memory:
    input:
        expand(layout.PROFILE, solver=PROFILE["solvers"]),
    output:
        png=report(
            f"{layout.FIGURES}/fig3_memory.png",
            caption="../report/memory.rst",
            category="Figures",
        ),
        pdf=f"{layout.FIGURES}/fig3_memory.pdf",
    log:
        f"{LOGS}/figures/fig3_memory.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=command_code("figure"),
        stem=lambda wc, output: os.path.splitext(output.png)[0],
    shell:
        "patchpnp figure memory {input:q} --out-stem {params.stem:q} > {log} 2>&1"


if FIGURES["padding"] is not None:

    localrules:
        figure_padding,

    rule figure_padding:
        input:
            gt=FIGURES["padding"]["gt"],
            zeros=FIGURES["padding"]["zeros"],
            reflect=FIGURES["padding"]["reflect"],
        output:
            png=report(
                f"{layout.FIGURES}/fig1_padding.png",
                caption="../report/padding.rst",
                category="Figures",
            ),
            pdf=f"{layout.FIGURES}/fig1_padding.pdf",
        log:
            f"{LOGS}/figures/fig1_padding.log",
        conda:
            "../envs/patchpnp.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            index=FIGURES["index"],
            band=INFER.get("boundary_band") or 4,
            code=command_code("figure"),
            stem=lambda wc, output: os.path.splitext(output.png)[0],
        shell:
            "patchpnp figure padding {input.gt:q} {input.zeros:q} {input.reflect:q}"
            " --index {params.index} --band {params.band} --out-stem {params.stem:q}"
            " > {log} 2>&1"


rule figure_qualitative:
    input:
        [r["gt"] for r in FIGURES["rows"]],
        [r["measurement"] for r in FIGURES["rows"]],
        [p[1] for r in FIGURES["rows"] for p in r["panels"]],
    output:
        png=report(
            f"{layout.FIGURES}/fig2_qualitative.png",
            caption="../report/qualitative.rst",
            category="Figures",
        ),
        pdf=f"{layout.FIGURES}/fig2_qualitative.pdf",
    log:
        f"{LOGS}/figures/fig2_qualitative.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        rows=json.dumps(FIGURES["rows"]),
        index=FIGURES["index"],
        code=command_code("figure"),
        stem=lambda wc, output: os.path.splitext(output.png)[0],
    shell:
        "patchpnp figure qualitative {params.rows:q} --index {params.index}"
        " --out-stem {params.stem:q} > {log} 2>&1"


# One denoiser call through P x P tiles (smallest patch size), next to the
# whole-image call of denoise_check: how much a prior loses on tiles by itself.
rule tile_check:
    input:
        data=plan.eval_files(),
        prior=layout.PRIOR,
    output:
        f"{layout.PRIOR_DIR}/denoise_check_p{{patch}}.csv",
    log:
        f"{LOGS}/denoise_check/{{prior}}_p{{patch}}.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: INFER.get("threads", 1)
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=gpus_for(1),
    params:
        rule="tile_check",
        seed=config["seed"],
        device=config["device"],
        batch=INFER["batch_images"],
        code=command_code("denoise-check"),
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp denoise-check {input.data:q} --prior {input.prior:q} --tile {wildcards.patch}"
        " --seed {params.seed} --output {output:q} --threads {threads}"
        " --batch {params.batch} --device {params.device} > {log} 2>&1"


rule results:
    input:
        rules.tables.output,
        plan.figure_files(),
        expand(
            f"{layout.PRIOR_DIR}/denoise_check_p{{patch}}.csv",
            prior=list(config["priors"]),
            patch=plan.patch_sizes()[:1],
        ),


# docs/results.md: every measured table under results/ in one dated document. Not in
# all, since it rewrites a tracked file: run it after the targets whose tables it should
# hold (it reads whichever exist and lists the absent ones).
rule results_doc:
    input:
        rules.results.input,
    output:
        "docs/results.md",
    log:
        f"{LOGS}/results_doc.log",
    conda:
        "../envs/patchpnp.yaml"
    params:
        configs=workflow.configfiles,
        code=command_code("results-doc"),
    shell:
        "patchpnp results-doc results --output {output:q} --configs {params.configs:q} > {log} 2>&1"
