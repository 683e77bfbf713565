"""Map page: respondents on the latent map, coloured by cohort or metadata."""

import plotly.express as px
import streamlit as st

from pages.state import current_study

study = current_study()
st.title("Latent map")
respondents = study.respondents()
respondents["cohort"] = respondents["cohort"].astype(str)
colour_options = ["cohort"] + [c for c in study.data.metadata.columns]
colour = st.selectbox("Colour by", colour_options)
figure = px.scatter(
    respondents, x="map_x", y="map_y", color=colour, hover_name="respondent_id",
    render_mode="webgl", height=650,
)
centres = study.centroid_coords()
figure.add_scatter(x=centres[:, 0], y=centres[:, 1], mode="markers+text", name="cohort personas",
                   text=[f"cohort {c}" for c in range(study.n_cohorts)], textposition="top center",
                   marker=dict(symbol="x", size=14, color="black"))
figure.update_layout(xaxis_title=None, yaxis_title=None)
st.plotly_chart(figure)
