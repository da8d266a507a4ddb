# snakemake seeds (config section seeds): every prior retrained under seeds.extra more
# training seeds (run k trains with seed + k; same data, schedule and steps) and the
# grid's cells rerun on each run's priors, with the grid's measurements and keyed solver
# noise, so a difference between runs is the training run's alone. Each run's tables go
# to results/seeds/run<k>/tables/; the claims and cells across runs (each claim's verdict
# per run, the between-run spread of every cell, claim (a)'s yardstick) to
# results/tables/seeds_{claims,cells}. Its own target and budget; in all where
# seeds.in_all.


use rule train_prior as seeds_train_prior with:
    output:
        weights=layout.SEED_PRIOR,
        settings=f"{layout.SEED_PRIOR_DIR}/settings.yaml",
        log_csv=f"{layout.SEED_PRIOR_DIR}/train_log.csv",
        curve=f"{layout.SEED_PRIOR_DIR}/loss.png",
    log:
        f"{LOGS}/seeds/run{{run}}/train/{{prior}}.log",
    benchmark:
        f"{LOGS}/benchmarks/seeds/run{{run}}/train/{{prior}}.tsv"
    params:
        rule="seeds_train_prior",
        settings=lambda wc: json.dumps(
            prior_settings(wc.prior) | {"seed": seeds_plan.training_seed(wc.run)}
        ),
        launcher=lambda wc: launcher(prior_settings(wc.prior)["training"]["processes"]),
        device=config["device"],
        code=command_code("train"),


use rule infer_cell as seeds_cell with:
    input:
        data=layout.SPLIT.replace("{split}", "eval"),
        prior=layout.SEED_PRIOR,
        lpips=lpips_input(),
        calibration=calibration_input,
    output:
        recon=layout.SEED_RECON,
        metrics=layout.SEED_METRICS,
    log:
        f"{LOGS}/seeds/run{{run}}/infer/{{dataset}}/{{prior}}/{{solver}}/{{task}}/{{size}}-{{padding}}.log",
    benchmark:
        f"{LOGS}/benchmarks/seeds/run{{run}}/infer/{{dataset}}/{{prior}}/{{solver}}/{{task}}/{{size}}-{{padding}}.tsv"
    params:
        rule="seeds_cell",


use rule tables as seeds_tables with:
    input:
        metrics=lambda wc: seeds_plan.metrics_files(wc.run),
        profiles=expand(layout.PROFILE, solver=PROFILE["solvers"]),
        paper_scale=PAPER_SCALE_INPUT,
        claims_metrics=[],
    output:
        table1=f"{layout.SEED_TABLES}/{layout.TABLE1_STEM}.csv",
        table1_md=f"{layout.SEED_TABLES}/{layout.TABLE1_STEM}.md",
        table1_tex=f"{layout.SEED_TABLES}/{layout.TABLE1_STEM}.tex",
        extended=f"{layout.SEED_TABLES}/{layout.EXTENDED_STEM}.csv",
        extended_md=f"{layout.SEED_TABLES}/{layout.EXTENDED_STEM}.md",
        claims=f"{layout.SEED_TABLES}/{layout.CLAIMS_STEM}.csv",
        claims_md=f"{layout.SEED_TABLES}/{layout.CLAIMS_STEM}.md",
        resolution=f"{layout.SEED_TABLES}/{layout.RESOLUTION_STEM}.csv",
        resolution_md=f"{layout.SEED_TABLES}/{layout.RESOLUTION_STEM}.md",
    log:
        f"{LOGS}/seeds/run{{run}}/tables.log",


rule seeds_table:
    input:
        grid_metrics=seeds_plan.cell_metrics_files(0),
        run_metrics=[
            m for r in seeds_plan.runs for m in seeds_plan.cell_metrics_files(r)
        ],
    output:
        claims=report(
            f"{layout.SEEDS_CLAIMS}.csv",
            caption="../report/seeds.rst",
            category="Training runs",
        ),
        claims_md=f"{layout.SEEDS_CLAIMS}.md",
        cells=report(
            f"{layout.SEEDS_CELLS}.csv",
            caption="../report/seeds.rst",
            category="Training runs",
        ),
        cells_md=f"{layout.SEEDS_CELLS}.md",
    log:
        f"{LOGS}/seeds/table.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        metrics=" ".join(
            "--metrics " + " ".join(seeds_plan.cell_metrics_files(r))
            for r in [0, *seeds_plan.runs]
        ),
        training_seeds=" ".join(
            str(seeds_plan.training_seed(r)) for r in [0, *seeds_plan.runs]
        ),
        seed=config["seed"],
        margin=config.get("claims", {}).get("margin_db", 0.5),
        whole=CLAIM_PRIORS.get("whole", "whole"),
        patch=CLAIM_PRIORS.get("patch", "patch"),
        stems=f"--out-claims {layout.SEEDS_CLAIMS} --out-cells {layout.SEEDS_CELLS}",
        code=command_code("seeds-table"),
    shell:
        "patchpnp seeds-table {params.metrics} --training-seeds {params.training_seeds}"
        " {params.stems} --seed {params.seed} --margin-db {params.margin}"
        " --whole-prior {params.whole} --patch-prior {params.patch} > {log} 2>&1"


# Each extra run's own tables (Table 1, extended, claims) come with the target.
rule seeds:
    input:
        rules.seeds_table.output,
        expand(f"{layout.SEED_TABLES}/{layout.CLAIMS_STEM}.csv", run=seeds_plan.runs),
